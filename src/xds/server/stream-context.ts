// What SotW and delta streams share: the node's identity and snapshot watch,
// nonces, event recording, and error handling on the gRPC call.
import * as grpc from '@grpc/grpc-js';
import type { JsonObject } from '../../config/proto-json.js';
import type { StreamKind } from '../protocol.js';
import type { AckEvent, NackEvent, RequestEvent, StreamInfo, XdsServerEvents } from './events.js';
import type { Snapshot, SnapshotCache } from './snapshot-cache.js';

export interface StreamHost {
  readonly cache: SnapshotCache;
  readonly pushOrder: readonly string[];
  readonly controlPlane: { identifier: string } | undefined;
  nextNonce(): string;
  emitEvent<K extends keyof XdsServerEvents>(name: K, ...args: XdsServerEvents[K]): void;
  recordAck(ev: AckEvent): void;
  recordNack(ev: NackEvent): void;
}

export class StreamContext {
  readonly info: StreamInfo;
  /** Set by the stream: called with each new snapshot of its node. */
  onSnapshot: (snap: Snapshot) => void = () => {};
  private unwatch: (() => void) | undefined;
  private closed = false;

  constructor(
    private readonly host: StreamHost,
    private readonly call: grpc.ServerDuplexStream<unknown, unknown>,
    streamId: number,
    kind: StreamKind,
    method: string,
  ) {
    this.info = { streamId, kind, method, nodeId: '' };
    // Headers first, so a client knows the stream is up before any response.
    call.sendMetadata(new grpc.Metadata());
    call.on('end', () => {
      this.close();
      call.end();
    });
    call.on('error', () => this.close());
    call.on('cancelled', () => this.close());
    call.on('close', () => this.close());
    host.emitEvent('stream', this.info);
  }

  get pushOrder(): readonly string[] {
    return this.host.pushOrder;
  }

  get controlPlane(): { identifier: string } | undefined {
    return this.host.controlPlane;
  }

  /** The node is named by the first request; later requests may omit it. */
  identify(node: JsonObject | undefined): void {
    if (this.unwatch || this.closed) return;
    const id = typeof node?.id === 'string' ? node.id : '';
    this.info.nodeId = id;
    this.unwatch = this.host.cache.watch(id, (s) => {
      if (!this.closed) this.onSnapshot(s);
    });
  }

  snapshot(): Snapshot | undefined {
    return this.host.cache.getSnapshot(this.info.nodeId);
  }

  nextNonce(): string {
    return this.host.nextNonce();
  }

  requestEvent(
    typeUrl: string,
    request: Record<string, unknown>,
    node: JsonObject | undefined,
  ): RequestEvent {
    return { ...this.info, typeUrl, request, node };
  }

  emit<K extends keyof XdsServerEvents>(name: K, ...args: XdsServerEvents[K]): void {
    this.host.emitEvent(name, ...args);
  }

  record(kind: 'ack', ev: AckEvent): void;
  record(kind: 'nack', ev: NackEvent): void;
  record(kind: 'ack' | 'nack', ev: AckEvent | NackEvent): void {
    if (kind === 'nack') this.host.recordNack(ev as NackEvent);
    else this.host.recordAck(ev);
  }

  send(call: grpc.ServerDuplexStream<unknown, unknown>, msg: unknown): void {
    if (!this.closed) call.write(msg);
  }

  /** Ends the stream with INVALID_ARGUMENT, as Envoy's management servers do for malformed requests. */
  fail(message: string): void {
    if (this.closed) return;
    this.close();
    this.call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: message });
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unwatch?.();
    this.host.emitEvent('streamClosed', this.info);
  }
}
