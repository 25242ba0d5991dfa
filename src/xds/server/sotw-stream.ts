// One state-of-the-world stream (ADS or a per-type service), per
// xds_protocol.rst:
//  - version_info and nonce are kept per type URL;
//  - a request whose nonce is not the latest sent for its type is stale and
//    ignored;
//  - a request with the latest nonce is an ACK, or a NACK when it carries
//    error_detail; either way nothing is sent again until the snapshot's
//    version for the type changes or the subscription changes, so a NACKed
//    version is never pushed twice;
//  - LDS and CDS subscribe to everything when the first request names nothing
//    (legacy wildcard) or names "*"; other types send only what is named.
import type * as grpc from '@grpc/grpc-js';
import type { DiscoveryRequest, DiscoveryResponse } from '../protocol.js';
import { typeInfo } from '../resources.js';
import type { StreamContext } from './stream-context.js';

interface TypeState {
  wildcard: boolean;
  /** The first request named nothing: wildcard until the client names resources. */
  legacyWildcard: boolean;
  names: Set<string>;
  /** Version of the last response sent (or the client's version on a resumed stream). */
  sentVersion: string | undefined;
  nonce: string | undefined;
  /** The nonce already ACKed or NACKed: later requests with it only change subscriptions. */
  answeredNonce: string | undefined;
}

export class SotwStream {
  private readonly types = new Map<string, TypeState>();

  constructor(
    private readonly ctx: StreamContext,
    private readonly call: grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>,
    /** Set for per-type services: the one type this stream serves. */
    private readonly fixedType: string | undefined,
  ) {
    ctx.onSnapshot = () => this.pushAll();
    call.on('data', (req: DiscoveryRequest) => this.onRequest(req));
  }

  private onRequest(req: DiscoveryRequest): void {
    const typeUrl = req.type_url || this.fixedType || '';
    if (!typeUrl || (this.fixedType && typeUrl !== this.fixedType) || !typeInfo(typeUrl)) {
      this.ctx.fail(`unsupported or missing type_url '${req.type_url}'`);
      return;
    }
    this.ctx.identify(req.node);
    const ev = this.ctx.requestEvent(typeUrl, req as unknown as Record<string, unknown>, req.node);
    this.ctx.emit('request', ev);

    let st = this.types.get(typeUrl);
    const first = !st;
    if (st?.nonce !== undefined && req.response_nonce !== '' && req.response_nonce !== st.nonce) {
      this.ctx.emit('staleRequest', ev);
      return;
    }
    if (st && req.response_nonce !== '' && req.response_nonce === st.nonce && st.answeredNonce !== st.nonce) {
      st.answeredNonce = st.nonce;
      const base = { ...this.ctx.info, typeUrl, nonce: req.response_nonce, versionInfo: req.version_info };
      if (req.error_detail) {
        this.ctx.record('nack', {
          ...base,
          errorDetail: req.error_detail,
          rejectedVersion: st.sentVersion ?? '',
        });
      } else {
        this.ctx.record('ack', base);
      }
    }

    const info = typeInfo(typeUrl)!;
    const named = req.resource_names.filter((n) => n !== '*');
    const explicitWildcard = req.resource_names.includes('*');
    if (!st) {
      const legacy = req.resource_names.length === 0 && info.wildcardByDefault;
      st = {
        wildcard: explicitWildcard || legacy,
        legacyWildcard: legacy,
        names: new Set(named),
        // A client resuming a stream says which version it runs; it needs
        // nothing until that changes (as go-control-plane does).
        sentVersion: req.version_info || undefined,
        nonce: undefined,
        answeredNonce: undefined,
      };
      this.types.set(typeUrl, st);
      this.respond(typeUrl, st, false);
      return;
    }
    let wildcard: boolean;
    if (explicitWildcard) wildcard = true;
    else if (st.legacyWildcard && req.resource_names.length === 0) wildcard = true;
    else {
      // Naming resources ends a legacy wildcard; an empty list after named
      // resources means "unsubscribe from everything".
      wildcard = false;
      st.legacyWildcard = false;
    }
    const changed = wildcard !== st.wildcard || !sameSet(st.names, named);
    st.wildcard = wildcard;
    st.names = new Set(named);
    this.respond(typeUrl, st, changed && !first);
  }

  private pushAll(): void {
    for (const typeUrl of this.ctx.pushOrder) {
      const st = this.types.get(typeUrl);
      if (st) this.respond(typeUrl, st, false);
    }
  }

  private respond(typeUrl: string, st: TypeState, subscriptionChanged: boolean): void {
    const snap = this.ctx.snapshot();
    if (!snap?.has(typeUrl)) return;
    const version = snap.version(typeUrl)!;
    if (!subscriptionChanged && version === st.sentVersion) return;
    const all = snap.resources(typeUrl);
    const selected = st.wildcard
      ? [...all.values()]
      : [...st.names].flatMap((n) => {
          const r = all.get(n);
          return r ? [r] : [];
        });
    if (!st.wildcard && st.names.size === 0 && !subscriptionChanged) return;
    const nonce = this.ctx.nextNonce();
    st.sentVersion = version;
    st.nonce = nonce;
    this.ctx.send(this.call, {
      version_info: version,
      resources: selected.map((r) => r.any),
      type_url: typeUrl,
      nonce,
      control_plane: this.ctx.controlPlane,
    });
    this.ctx.emit('response', {
      ...this.ctx.info,
      typeUrl,
      nonce,
      versionInfo: version,
      resourceNames: selected.map((r) => r.name),
      removed: [],
    });
  }
}

function sameSet(a: Set<string>, b: string[]): boolean {
  if (a.size !== new Set(b).size) return false;
  return b.every((x) => a.has(x));
}
