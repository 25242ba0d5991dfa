// One incremental (delta) stream, per xds_protocol.rst "Incremental xDS":
//  - the server tracks, per type, which resources the client has at which
//    version (seeded by initial_resource_versions on a new stream) and sends
//    only resources whose version differs, plus removed_resources for those
//    that left the snapshot;
//  - a resource's version is the hash of its encoded bytes, so an unchanged
//    resource is never resent, and a NACKed one only when it changes;
//  - subscriptions change with resource_names_subscribe/_unsubscribe; "*" is
//    the wildcard, and LDS/CDS streams whose first request names nothing are
//    wildcard (legacy);
//  - a named resource that does not exist is reported once in
//    removed_resources, so the client knows it does not exist.
import type * as grpc from '@grpc/grpc-js';
import type { DeltaDiscoveryRequest, DeltaDiscoveryResponse } from '../protocol.js';
import { typeInfo } from '../resources.js';
import type { StreamContext } from './stream-context.js';

interface TypeState {
  wildcard: boolean;
  names: Set<string>;
  /** What the client has (or was sent): name -> version. */
  clientVersions: Map<string, string>;
  /** Named resources already reported as absent. */
  toldAbsent: Set<string>;
  nonce: string | undefined;
  answeredNonce: string | undefined;
  systemVersion: string;
  answered: boolean;
}

export class DeltaStream {
  private readonly types = new Map<string, TypeState>();

  constructor(
    private readonly ctx: StreamContext,
    private readonly call: grpc.ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>,
    private readonly fixedType: string | undefined,
  ) {
    ctx.onSnapshot = () => {
      for (const typeUrl of ctx.pushOrder) {
        const st = this.types.get(typeUrl);
        if (st) this.respond(typeUrl, st);
      }
    };
    call.on('data', (req: DeltaDiscoveryRequest) => this.onRequest(req));
  }

  private onRequest(req: DeltaDiscoveryRequest): void {
    const typeUrl = req.type_url || this.fixedType || '';
    if (!typeUrl || (this.fixedType && typeUrl !== this.fixedType) || !typeInfo(typeUrl)) {
      this.ctx.fail(`unsupported or missing type_url '${req.type_url}'`);
      return;
    }
    this.ctx.identify(req.node);
    const ev = this.ctx.requestEvent(typeUrl, req as unknown as Record<string, unknown>, req.node);
    this.ctx.emit('request', ev);

    let st = this.types.get(typeUrl);
    if (!st) {
      const legacy = req.resource_names_subscribe.length === 0 && typeInfo(typeUrl)!.wildcardByDefault;
      st = {
        wildcard: legacy,
        names: new Set(),
        clientVersions: new Map(Object.entries(req.initial_resource_versions)),
        toldAbsent: new Set(),
        nonce: undefined,
        answeredNonce: undefined,
        systemVersion: '',
        answered: false,
      };
      this.types.set(typeUrl, st);
    } else if (req.response_nonce !== '') {
      if (req.response_nonce === st.nonce) {
        if (st.answeredNonce === st.nonce) {
          // Already ACKed or NACKed: this request only changes subscriptions.
        } else {
          st.answeredNonce = st.nonce;
          const base = { ...this.ctx.info, typeUrl, nonce: req.response_nonce, versionInfo: '' };
          if (req.error_detail)
            this.ctx.record('nack', {
              ...base,
              errorDetail: req.error_detail,
              rejectedVersion: st.systemVersion,
            });
          else this.ctx.record('ack', base);
        }
      } else {
        // A stale ACK/NACK says nothing about the latest response; its
        // subscription changes still apply.
        this.ctx.emit('staleRequest', ev);
      }
    }

    for (const n of req.resource_names_subscribe) {
      if (n === '*') st.wildcard = true;
      else {
        if (!st.names.has(n)) st.toldAbsent.delete(n);
        st.names.add(n);
      }
    }
    for (const n of req.resource_names_unsubscribe) {
      if (n === '*') st.wildcard = false;
      else {
        st.names.delete(n);
        st.toldAbsent.delete(n);
        // Forget what the client had, so a later subscribe sends it again.
        if (!st.wildcard) st.clientVersions.delete(n);
      }
    }
    if (!st.wildcard) {
      for (const n of [...st.clientVersions.keys()]) if (!st.names.has(n)) st.clientVersions.delete(n);
    }
    this.respond(typeUrl, st);
  }

  private respond(typeUrl: string, st: TypeState): void {
    const snap = this.ctx.snapshot();
    if (!snap?.has(typeUrl)) return;
    const all = snap.resources(typeUrl);
    const send: { name: string; version: string; resource: { type_url: string; value: Uint8Array } }[] = [];
    const removed: string[] = [];
    const consider = (name: string) => {
      const r = all.get(name);
      if (r) {
        if (st.clientVersions.get(name) !== r.version) {
          send.push({ name, version: r.version, resource: r.any });
          st.clientVersions.set(name, r.version);
        }
        st.toldAbsent.delete(name);
      } else if (st.clientVersions.has(name)) {
        removed.push(name);
        st.clientVersions.delete(name);
        st.toldAbsent.add(name);
      } else if (st.names.has(name) && !st.toldAbsent.has(name)) {
        removed.push(name);
        st.toldAbsent.add(name);
      }
    };
    const names = new Set<string>(st.names);
    if (st.wildcard) for (const n of all.keys()) names.add(n);
    for (const n of st.clientVersions.keys()) names.add(n);
    for (const n of names) consider(n);
    // The first answer for a type is sent even when empty, so the client
    // knows the server has nothing for it.
    if (send.length === 0 && removed.length === 0 && st.answered) return;
    if (send.length === 0 && removed.length === 0 && !st.wildcard && st.names.size === 0) return;
    st.answered = true;
    const nonce = this.ctx.nextNonce();
    const version = snap.version(typeUrl)!;
    st.nonce = nonce;
    st.systemVersion = version;
    this.ctx.send(this.call, {
      system_version_info: version,
      resources: send,
      type_url: typeUrl,
      removed_resources: removed,
      nonce,
      control_plane: this.ctx.controlPlane,
    });
    this.ctx.emit('response', {
      ...this.ctx.info,
      typeUrl,
      nonce,
      versionInfo: version,
      resourceNames: send.map((r) => r.name),
      removed,
    });
  }
}
