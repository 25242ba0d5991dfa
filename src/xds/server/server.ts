// Herald's xDS management server: the AggregatedDiscoveryService and the
// per-type discovery services (LDS, RDS, CDS, EDS, SDS), each with its
// state-of-the-world and delta streams, serving a SnapshotCache over grpc-js.
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import {
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
  type DiscoveryRequest,
  type DiscoveryResponse,
  discoveryServices,
  grpcServiceDefinition,
} from '../protocol.js';
import { PUSH_ORDER } from '../resources.js';
import { DeltaStream } from './delta-stream.js';
import type { AckEvent, NackEvent, XdsServerEvents } from './events.js';
import type { SnapshotCache } from './snapshot-cache.js';
import { SotwStream } from './sotw-stream.js';
import { StreamContext, type StreamHost } from './stream-context.js';

export interface XdsServerOptions {
  /** Sent as control_plane.identifier in every response. */
  controlPlaneId?: string;
  /** Keep at most this many ACK/NACK records (oldest dropped). Default 1000. */
  maxRecords?: number;
}

export class XdsServer extends EventEmitter<XdsServerEvents> implements StreamHost {
  readonly pushOrder = PUSH_ORDER;
  readonly controlPlane: { identifier: string } | undefined;
  /** ACKs seen, oldest first. */
  readonly acks: AckEvent[] = [];
  /** NACKs seen, with the client's error_detail, oldest first. */
  readonly nacks: NackEvent[] = [];
  private readonly maxRecords: number;
  private nonceSeq = 0;
  private streamSeq = 0;
  private openStreams = 0;
  private grpcServer: grpc.Server | undefined;

  constructor(
    readonly cache: SnapshotCache,
    opts: XdsServerOptions = {},
  ) {
    super();
    this.controlPlane = opts.controlPlaneId ? { identifier: opts.controlPlaneId } : undefined;
    this.maxRecords = opts.maxRecords ?? 1000;
    this.on('stream', () => this.openStreams++);
    this.on('streamClosed', () => this.openStreams--);
  }

  /** Streams currently open. */
  get streamCount(): number {
    return this.openStreams;
  }

  nextNonce(): string {
    return String(++this.nonceSeq);
  }

  emitEvent<K extends keyof XdsServerEvents>(name: K, ...args: XdsServerEvents[K]): void {
    (this.emit as (n: K, ...a: XdsServerEvents[K]) => boolean)(name, ...args);
  }

  recordAck(ev: AckEvent): void {
    this.acks.push(ev);
    if (this.acks.length > this.maxRecords) this.acks.shift();
    this.emitEvent('ack', ev);
  }

  recordNack(ev: NackEvent): void {
    this.nacks.push(ev);
    if (this.nacks.length > this.maxRecords) this.nacks.shift();
    this.emitEvent('nack', ev);
  }

  /** Adds ADS and the per-type services to a grpc-js server (for hosting beside other services). */
  addTo(server: grpc.Server): void {
    for (const svc of discoveryServices()) {
      const impl: grpc.UntypedServiceImplementation = {};
      for (const m of svc.methods) {
        impl[m.name] = (call: grpc.ServerDuplexStream<unknown, unknown>) => {
          const ctx = new StreamContext(this, call, ++this.streamSeq, m.kind, m.path);
          if (m.kind === 'sotw')
            new SotwStream(
              ctx,
              call as grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>,
              svc.typeUrl,
            );
          else
            new DeltaStream(
              ctx,
              call as grpc.ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>,
              svc.typeUrl,
            );
        };
      }
      server.addService(grpcServiceDefinition(svc), impl);
    }
  }

  /** Starts a plaintext grpc-js server; returns the bound port. */
  async listen(
    address = '127.0.0.1:0',
    credentials = grpc.ServerCredentials.createInsecure(),
  ): Promise<number> {
    if (this.grpcServer) throw new Error('already listening');
    const server = new grpc.Server();
    this.addTo(server);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(address, credentials, (err, p) => (err ? reject(err) : resolve(p))),
    );
    this.grpcServer = server;
    return port;
  }

  /** Stops serving; open streams are cancelled (clients see UNAVAILABLE/CANCELLED and reconnect). */
  async close(): Promise<void> {
    const server = this.grpcServer;
    this.grpcServer = undefined;
    if (!server) return;
    server.forceShutdown();
  }
}
