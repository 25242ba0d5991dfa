// Herald's xDS client protocol engine: subscriptions by type URL and resource
// name over ADS or the per-type services, state-of-the-world (GRPC) or
// incremental (DELTA_GRPC), as xds_protocol.rst specifies:
//  - every response is ACKed (SotW: its version_info and nonce; delta: its
//    nonce) or NACKed with error_detail (google.rpc.Status INVALID_ARGUMENT);
//    a NACK carries the last accepted version_info, and the last good
//    resources stay in force;
//  - SotW LDS/CDS responses are the full state: a resource that is absent was
//    removed; delta removals come in removed_resources;
//  - when a stream fails it is retried with jittered exponential backoff,
//    resending the subscriptions with the last accepted version_info (SotW)
//    or initial_resource_versions (delta);
//  - initial_fetch_timeout: a subscription that got nothing in time is
//    reported, as Envoy does before it stops waiting for it.
// The client owns no Herald config: it hands canonical proto3 JSON to
// onUpdate, whose verdict decides the ACK or NACK.
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { initHashing, xxHash64 } from '../../common/xxhash.js';
import { envoyProtos } from '../../config/envoy-protos.js';
import { ConfigErrors } from '../../config/errors.js';
import type { JsonObject } from '../../config/proto-json.js';
import { walkMessage } from '../../config/proto-json.js';
import {
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
  type DiscoveryRequest,
  type DiscoveryResponse,
  discoveryCodec,
  findMethod,
  INVALID_ARGUMENT,
  type StreamKind,
} from '../protocol.js';
import {
  type DecodedResource,
  decodeResource,
  RESOURCE_TYPES,
  typeInfo,
  type XdsShortName,
} from '../resources.js';
import { type BackoffOptions, JitteredBackoff } from './backoff.js';

export type ApiType = 'GRPC' | 'DELTA_GRPC';

/** envoy.config.core.v3.Node, as proto3 JSON; user_agent_name is always "herald". */
export interface XdsNode {
  id: string;
  cluster?: string;
  metadata?: JsonObject;
  locality?: JsonObject;
  user_agent_version?: string;
  client_features?: string[];
}

export interface ResourceUpdate {
  /** Per-resource version: the server's (delta) or the hash of the resource's bytes (SotW). */
  version: string;
  /** Canonical proto3 JSON with `@type`. */
  resource: JsonObject;
}

export interface XdsUpdate {
  /** Resources the client did not have. */
  added: Map<string, ResourceUpdate>;
  /** Resources the client had, with a different version. */
  updated: Map<string, ResourceUpdate>;
  /** Names of resources the client had that the server removed. */
  removed: string[];
  /** SotW version_info, or delta system_version_info. */
  versionInfo: string;
  /** Every resource of the type as it will be if this update is accepted. */
  state: ReadonlyMap<string, ResourceUpdate>;
}

/**
 * Called once per response. Return undefined to accept (ACK), or a message to
 * reject (NACK with that message as error_detail.message); a thrown error is
 * a rejection too. On rejection nothing of the response is applied.
 */
export type OnUpdate = (typeUrl: string, update: XdsUpdate) => string | undefined;

export interface XdsClientOptions {
  /** Control plane address for grpc-js (`127.0.0.1:18000`, `dns:///cp:18000`). */
  target?: string;
  /** An existing channel to the control plane (instead of target). */
  channel?: grpc.Channel;
  credentials?: grpc.ChannelCredentials;
  channelOptions?: grpc.ChannelOptions;
  node: XdsNode;
  /** GRPC (state of the world, default) or DELTA_GRPC (incremental). */
  apiType?: ApiType;
  /** One aggregated stream (default) or one stream per type on the per-type services. */
  ads?: boolean;
  onUpdate: OnUpdate;
  /** Envoy's initial_fetch_timeout; default 15 s, 0 disables. */
  initialFetchTimeoutMs?: number;
  onInitialFetchTimeout?: (typeUrl: string, pendingNames: string[]) => void;
  backoff?: BackoffOptions;
}

/** Envoy's per-subscription stats (`listener_manager.lds.*`, `cluster_manager.cds.*`, ...). */
export interface SubscriptionStats {
  update_attempt: number;
  update_success: number;
  update_rejected: number;
  update_failure: number;
  init_fetch_timeout: number;
  /** xxHash64 of the last accepted version_info, as Envoy's `version` gauge. */
  version: bigint;
  version_text: string;
}

export interface XdsClientStats {
  control_plane: { connected_state: 0 | 1 };
  lds: SubscriptionStats;
  rds: SubscriptionStats;
  cds: SubscriptionStats;
  eds: SubscriptionStats;
  sds: SubscriptionStats;
}

export interface XdsClientEvents {
  connected: [];
  disconnected: [grpc.StatusObject];
  /** Every request sent, SotW or delta, as sent. */
  request: [DiscoveryRequest | DeltaDiscoveryRequest];
  response: [DiscoveryResponse | DeltaDiscoveryResponse];
}

interface PendingFetch {
  names: Set<string>;
  timer: NodeJS.Timeout;
}

interface Subscription {
  typeUrl: string;
  short: XdsShortName;
  fullState: boolean;
  wildcard: boolean;
  names: Set<string>;
  /** Accepted resources. */
  resources: Map<string, ResourceUpdate>;
  /** SotW: the version_info of the last accepted response. */
  versionInfo: string;
  /** Nonce of the last response received on the current stream. */
  nonce: string;
  /** Whether the current stream carries this type's first request. */
  announced: boolean;
  fetches: PendingFetch[];
  /** Names subscribed before start(): their initial fetch timers start with the client. */
  deferredFetch: string[];
}

const WILDCARD = '*';

function newStats(): SubscriptionStats {
  return {
    update_attempt: 0,
    update_success: 0,
    update_rejected: 0,
    update_failure: 0,
    init_fetch_timeout: 0,
    version: 0n,
    version_text: '',
  };
}

/** One gRPC stream: the ADS stream, or the stream of one per-type service. */
class XdsStream {
  call: grpc.ClientDuplexStream<unknown, unknown> | undefined;
  connected = false;
  sentNode = false;
  retryTimer: NodeJS.Timeout | undefined;
  readonly backoff: JitteredBackoff;

  constructor(
    readonly key: string,
    readonly kind: StreamKind,
    readonly path: string,
    backoff: BackoffOptions | undefined,
  ) {
    this.backoff = new JitteredBackoff(backoff);
  }
}

export class XdsClient extends EventEmitter<XdsClientEvents> {
  readonly stats: XdsClientStats = {
    control_plane: { connected_state: 0 },
    lds: newStats(),
    rds: newStats(),
    cds: newStats(),
    eds: newStats(),
    sds: newStats(),
  };
  readonly apiType: ApiType;
  readonly ads: boolean;
  private readonly node: JsonObject;
  private readonly client: grpc.Client;
  private readonly subs = new Map<string, Subscription>();
  private readonly streams = new Map<string, XdsStream>();
  private readonly kind: StreamKind;
  private readonly initialFetchTimeoutMs: number;
  private started = false;
  private closed = false;
  /** A channel passed in belongs to the caller and is not closed with the client. */
  private readonly ownsChannel: boolean;

  constructor(private readonly opts: XdsClientOptions) {
    super();
    this.apiType = opts.apiType ?? 'GRPC';
    this.kind = this.apiType === 'DELTA_GRPC' ? 'delta' : 'sotw';
    this.ads = opts.ads ?? true;
    this.initialFetchTimeoutMs = opts.initialFetchTimeoutMs ?? 15_000;
    const credentials = opts.credentials ?? grpc.credentials.createInsecure();
    this.ownsChannel = !opts.channel;
    if (opts.channel) {
      this.client = new grpc.Client(opts.channel.getTarget(), credentials, {
        channelOverride: opts.channel,
      });
    } else if (opts.target) {
      this.client = new grpc.Client(opts.target, credentials, opts.channelOptions ?? {});
    } else {
      throw new Error('XdsClient needs a target or a channel');
    }
    const node = { ...opts.node, user_agent_name: 'herald' } as Record<string, unknown>;
    // The node is validated once, as any Envoy config, so a bad one fails here and not on the wire.
    const { value, errors } = walkMessage(envoyProtos(), 'envoy.config.core.v3.Node', node, {
      checkRequired: true,
    });
    if (errors.length || !value) throw new ConfigErrors(errors);
    this.node = value;
  }

  /** Opens the stream(s) for the subscriptions made so far; later ones open as they come. */
  async start(): Promise<void> {
    if (this.started) return;
    await initHashing();
    discoveryCodec(); // load the discovery protos before the first message
    this.started = true;
    for (const sub of this.subs.values()) {
      this.startFetchTimer(sub, sub.deferredFetch.splice(0));
      if (!sub.announced) this.announce(sub); // opening the stream announced those on it
    }
  }

  /** Stops everything; no reconnect. */
  close(): void {
    this.closed = true;
    for (const s of this.streams.values()) {
      if (s.retryTimer) clearTimeout(s.retryTimer);
      s.call?.cancel();
      s.call = undefined;
    }
    for (const sub of this.subs.values()) for (const f of sub.fetches) clearTimeout(f.timer);
    if (this.ownsChannel) this.client.close();
    this.setConnected();
  }

  /**
   * Subscribes to resources of a type. No names (or "*") on LDS/CDS is the
   * wildcard; names add to the current subscription.
   */
  subscribe(typeUrl: string, names: readonly string[] = []): void {
    const info = typeInfo(typeUrl);
    if (!info) throw new Error(`unsupported xDS resource type ${typeUrl}`);
    let sub = this.subs.get(typeUrl);
    const isNew = !sub;
    if (!sub) {
      sub = {
        typeUrl,
        short: info.short,
        fullState: info.fullState,
        wildcard: false,
        names: new Set(),
        resources: new Map(),
        versionInfo: '',
        nonce: '',
        announced: false,
        fetches: [],
        deferredFetch: [],
      };
      this.subs.set(typeUrl, sub);
    }
    const wantWildcard = names.includes(WILDCARD) || (names.length === 0 && info.wildcardByDefault);
    const added: string[] = [];
    if (wantWildcard && !sub.wildcard) {
      sub.wildcard = true;
      added.push(WILDCARD);
    }
    for (const n of names) {
      if (n === WILDCARD || sub.names.has(n)) continue;
      sub.names.add(n);
      added.push(n);
    }
    if (added.length === 0 && !isNew) return;
    this.startFetchTimer(
      sub,
      added.filter((n) => n === WILDCARD || !sub.resources.has(n)),
    );
    if (!this.started) return;
    if (!sub.announced) this.announce(sub);
    else if (this.kind === 'sotw') this.sendSotw(sub, undefined);
    else this.sendDelta(sub, { subscribe: added, unsubscribe: [] });
  }

  /** Unsubscribes from names, or from the whole type when no names are given. */
  unsubscribe(typeUrl: string, names?: readonly string[]): void {
    const sub = this.subs.get(typeUrl);
    if (!sub) return;
    const removed: string[] = [];
    if (!names || names.length === 0 || names.includes(WILDCARD)) {
      if (sub.wildcard) removed.push(WILDCARD);
      sub.wildcard = false;
    }
    const drop = !names || names.length === 0 ? [...sub.names] : names.filter((n) => n !== WILDCARD);
    for (const n of drop) if (sub.names.delete(n)) removed.push(n);
    if (removed.length === 0) return;
    for (const f of sub.fetches) for (const n of removed) f.names.delete(n);
    // What is no longer subscribed is forgotten, without an update: the caller asked for it.
    for (const name of [...sub.resources.keys()])
      if (!sub.wildcard && !sub.names.has(name)) sub.resources.delete(name);
    if (!this.started || !sub.announced) return;
    if (this.kind === 'sotw') this.sendSotw(sub, undefined);
    else this.sendDelta(sub, { subscribe: [], unsubscribe: removed });
  }

  /** The accepted resources of a type. */
  resources(typeUrl: string): ReadonlyMap<string, ResourceUpdate> {
    return this.subs.get(typeUrl)?.resources ?? new Map();
  }

  /** The last accepted version_info (SotW) or system_version_info (delta) of a type. */
  versionInfo(typeUrl: string): string {
    return this.subs.get(typeUrl)?.versionInfo ?? '';
  }

  // -------------------------------------------------------------------------
  // Streams

  private streamFor(sub: Subscription): XdsStream {
    const key = this.ads ? 'ads' : sub.typeUrl;
    let s = this.streams.get(key);
    if (!s) {
      const method = findMethod(this.kind, this.ads ? undefined : sub.typeUrl);
      s = new XdsStream(key, this.kind, method.path, this.opts.backoff);
      this.streams.set(key, s);
    }
    return s;
  }

  private subsOn(stream: XdsStream): Subscription[] {
    return [...this.subs.values()].filter((s) => (this.ads ? 'ads' : s.typeUrl) === stream.key);
  }

  /** Sends a type's first request on its stream, opening the stream if needed. */
  private announce(sub: Subscription): void {
    if (this.closed) return;
    const stream = this.streamFor(sub);
    if (!stream.call) {
      // open() announces every subscription on the stream (now, or when the pending retry runs).
      if (!stream.retryTimer) this.open(stream);
      return;
    }
    if (!sub.wildcard && sub.names.size === 0) return; // nothing to ask for
    sub.announced = true;
    if (this.kind === 'sotw') this.sendSotw(sub, undefined);
    else this.sendDelta(sub, { subscribe: [], unsubscribe: [] }, true);
  }

  private open(stream: XdsStream): void {
    const c = discoveryCodec();
    const sotw = stream.kind === 'sotw';
    const call = this.client.makeBidiStreamRequest(
      stream.path,
      (sotw ? c.encodeRequest : c.encodeDeltaRequest) as (v: unknown) => Buffer,
      (sotw ? c.decodeResponse : c.decodeDeltaResponse) as (b: Buffer) => unknown,
      new grpc.Metadata(),
    );
    stream.call = call;
    stream.connected = false;
    stream.sentNode = false;
    call.on('metadata', () => this.onConnected(stream, call));
    call.on('data', (msg: unknown) => {
      if (stream.call !== call) return;
      this.onConnected(stream, call);
      stream.backoff.reset();
      if (sotw) this.onSotwResponse(stream, msg as DiscoveryResponse);
      else this.onDeltaResponse(stream, msg as DeltaDiscoveryResponse);
    });
    call.on('error', () => {}); // the outcome is handled on 'status'
    call.on('status', (status: grpc.StatusObject) => this.onStreamClosed(stream, call, status));
    for (const sub of this.subsOn(stream)) {
      sub.announced = false;
      sub.nonce = '';
    }
    for (const sub of this.subsOn(stream)) this.announce(sub);
  }

  private onConnected(stream: XdsStream, call: grpc.ClientDuplexStream<unknown, unknown>): void {
    if (stream.call !== call || stream.connected) return;
    stream.connected = true;
    this.setConnected();
  }

  private onStreamClosed(
    stream: XdsStream,
    call: grpc.ClientDuplexStream<unknown, unknown>,
    status: grpc.StatusObject,
  ): void {
    if (stream.call !== call) return;
    stream.call = undefined;
    stream.connected = false;
    this.setConnected();
    if (this.closed) return;
    for (const sub of this.subsOn(stream)) {
      sub.announced = false;
      sub.nonce = '';
      this.stats[sub.short].update_failure++;
    }
    this.emit('disconnected', status);
    const delay = stream.backoff.next();
    stream.retryTimer = setTimeout(() => {
      stream.retryTimer = undefined;
      if (!this.closed) this.open(stream);
    }, delay);
    stream.retryTimer.unref();
  }

  private setConnected(): void {
    const streams = [...this.streams.values()].filter((s) => s.call || s.retryTimer);
    const up = !this.closed && streams.length > 0 && streams.every((s) => s.connected);
    const state = up ? 1 : 0;
    if (state === this.stats.control_plane.connected_state) return;
    this.stats.control_plane.connected_state = state;
    if (up) this.emit('connected');
  }

  private write(stream: XdsStream, msg: DiscoveryRequest | DeltaDiscoveryRequest): void {
    if (!stream.call) return;
    stream.call.write(msg);
    this.emit('request', msg);
  }

  /** The node goes in the first request of each stream only. */
  private nodeOnce(stream: XdsStream): JsonObject | undefined {
    if (stream.sentNode) return undefined;
    stream.sentNode = true;
    return this.node;
  }

  // -------------------------------------------------------------------------
  // State of the world

  private sotwNames(sub: Subscription): string[] {
    const names = [...sub.names];
    // Only wildcard: the legacy empty list, which every server understands.
    if (sub.wildcard) return names.length ? [WILDCARD, ...names] : [];
    return names;
  }

  private sendSotw(sub: Subscription, errorDetail: string | undefined): void {
    const stream = this.streamFor(sub);
    if (!stream.call) return;
    this.write(stream, {
      version_info: sub.versionInfo,
      node: this.nodeOnce(stream),
      resource_names: this.sotwNames(sub),
      type_url: sub.typeUrl,
      response_nonce: sub.nonce,
      error_detail: errorDetail === undefined ? undefined : { code: INVALID_ARGUMENT, message: errorDetail },
    });
  }

  private onSotwResponse(stream: XdsStream, resp: DiscoveryResponse): void {
    this.emit('response', resp);
    const sub = this.subs.get(resp.type_url);
    if (!sub || this.streamFor(sub) !== stream) return; // a type nobody asked for on this stream
    sub.nonce = resp.nonce;
    const stats = this.stats[sub.short];
    stats.update_attempt++;

    const received = new Map<string, DecodedResource>();
    let error: string | undefined;
    try {
      for (const any of resp.resources) {
        const r = decodeResource(sub.typeUrl, any);
        if (received.has(r.name)) throw new Error(`duplicate resource name '${r.name}'`);
        received.set(r.name, r);
      }
    } catch (e) {
      error = (e as Error).message;
    }
    const update: XdsUpdate = {
      added: new Map(),
      updated: new Map(),
      removed: [],
      versionInfo: resp.version_info,
      state: new Map(),
    };
    for (const [name, r] of received) {
      if (!sub.wildcard && !sub.names.has(name)) continue; // not asked for
      const had = sub.resources.get(name);
      if (!had) update.added.set(name, { version: r.version, resource: r.json });
      else if (had.version !== r.version) update.updated.set(name, { version: r.version, resource: r.json });
    }
    if (sub.fullState)
      for (const name of sub.resources.keys()) if (!received.has(name)) update.removed.push(name);

    // Whatever the verdict, these names got an answer.
    const answered = new Set<string>([...received.keys()]);
    if (sub.fullState) for (const n of sub.names) answered.add(n);
    this.clearFetches(sub, answered);

    error ??= this.verdict(sub, update);
    if (error !== undefined) {
      stats.update_rejected++;
      this.sendSotw(sub, error); // NACK: previous version_info, this nonce
      return;
    }
    sub.resources = new Map(update.state);
    sub.versionInfo = resp.version_info;
    this.accepted(sub);
    this.sendSotw(sub, undefined); // ACK
  }

  // -------------------------------------------------------------------------
  // Incremental

  private sendDelta(
    sub: Subscription,
    change: { subscribe: string[]; unsubscribe: string[] },
    initial = false,
    ack?: { nonce: string; error?: string },
  ): void {
    const stream = this.streamFor(sub);
    if (!stream.call) return;
    let subscribe = change.subscribe;
    const initialVersions: Record<string, string> = {};
    if (initial) {
      // A new stream: the whole subscription, and what the client already has.
      subscribe = this.sotwNames(sub);
      for (const [n, r] of sub.resources) initialVersions[n] = r.version;
    }
    this.write(stream, {
      node: this.nodeOnce(stream),
      type_url: sub.typeUrl,
      resource_names_subscribe: subscribe,
      resource_names_unsubscribe: change.unsubscribe,
      initial_resource_versions: initialVersions,
      response_nonce: ack?.nonce ?? '',
      error_detail: ack?.error === undefined ? undefined : { code: INVALID_ARGUMENT, message: ack.error },
    });
  }

  private onDeltaResponse(stream: XdsStream, resp: DeltaDiscoveryResponse): void {
    this.emit('response', resp);
    const sub = this.subs.get(resp.type_url);
    if (!sub || this.streamFor(sub) !== stream) return;
    sub.nonce = resp.nonce;
    const stats = this.stats[sub.short];
    stats.update_attempt++;

    const update: XdsUpdate = {
      added: new Map(),
      updated: new Map(),
      removed: [],
      versionInfo: resp.system_version_info,
      state: new Map(),
    };
    let error: string | undefined;
    const seen = new Set<string>();
    try {
      for (const r of resp.resources) {
        if (!r.resource) continue; // a name-only entry carries nothing to apply
        const d = decodeResource(sub.typeUrl, r.resource);
        if (r.name && r.name !== d.name)
          throw new Error(`resource '${r.name}' holds a resource named '${d.name}'`);
        if (seen.has(d.name)) throw new Error(`duplicate resource name '${d.name}'`);
        seen.add(d.name);
        if (!sub.wildcard && !sub.names.has(d.name)) continue;
        const version = r.version || d.version;
        const had = sub.resources.get(d.name);
        if (!had) update.added.set(d.name, { version, resource: d.json });
        else if (had.version !== version) update.updated.set(d.name, { version, resource: d.json });
      }
    } catch (e) {
      error = (e as Error).message;
    }
    for (const name of resp.removed_resources) if (sub.resources.has(name)) update.removed.push(name);
    this.clearFetches(sub, new Set([...seen, ...resp.removed_resources]));

    error ??= this.verdict(sub, update);
    if (error !== undefined) {
      stats.update_rejected++;
      this.sendDelta(sub, { subscribe: [], unsubscribe: [] }, false, { nonce: resp.nonce, error });
      return;
    }
    sub.resources = new Map(update.state);
    sub.versionInfo = resp.system_version_info;
    this.accepted(sub);
    this.sendDelta(sub, { subscribe: [], unsubscribe: [] }, false, { nonce: resp.nonce });
  }

  // -------------------------------------------------------------------------

  private verdict(sub: Subscription, update: XdsUpdate): string | undefined {
    const state = new Map(sub.resources);
    for (const name of update.removed) state.delete(name);
    for (const m of [update.added, update.updated]) for (const [n, r] of m) state.set(n, r);
    update.state = state;
    try {
      return this.opts.onUpdate(sub.typeUrl, update);
    } catch (e) {
      return e instanceof Error ? e.message : String(e);
    }
  }

  private accepted(sub: Subscription): void {
    const stats = this.stats[sub.short];
    stats.update_success++;
    stats.version_text = sub.versionInfo;
    stats.version = xxHash64(sub.versionInfo);
  }

  private startFetchTimer(sub: Subscription, names: string[]): void {
    if (this.initialFetchTimeoutMs <= 0 || names.length === 0) return;
    const fetch: PendingFetch = {
      names: new Set(names),
      timer: setTimeout(() => {
        sub.fetches = sub.fetches.filter((f) => f !== fetch);
        if (fetch.names.size === 0 || this.closed) return;
        this.stats[sub.short].init_fetch_timeout++;
        this.opts.onInitialFetchTimeout?.(sub.typeUrl, [...fetch.names]);
      }, this.initialFetchTimeoutMs),
    };
    fetch.timer.unref();
    sub.fetches.push(fetch);
  }

  private clearFetches(sub: Subscription, answered: Set<string>): void {
    for (const f of sub.fetches) {
      f.names.delete(WILDCARD); // any response answers a wildcard subscription
      for (const n of answered) f.names.delete(n);
      if (f.names.size === 0) clearTimeout(f.timer);
    }
    sub.fetches = sub.fetches.filter((f) => f.names.size > 0);
  }
}

export { RESOURCE_TYPES };
