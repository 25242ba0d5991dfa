// gRPC health checks (HealthCheck.grpc_health_check), as Envoy's GrpcHealthCheckerImpl:
// grpc.health.v1.Health/Check over HTTP/2 with the configured service name. Only an OK
// status with a SERVING answer passes; anything else fails the host at once, a broken
// connection or stream counts against unhealthy_threshold.
//
// The two messages are one field each, so they are encoded here by hand:
//   HealthCheckRequest  { string service = 1; }
//   HealthCheckResponse { ServingStatus status = 1; }  (SERVING = 1)
import type http2 from 'node:http2';
import { http2Module } from '../../common/lazy-modules.js';
import type { Host } from '../host.js';
import { connectToHost } from '../transport-socket.js';
import { ActiveHealthCheckSession, HealthChecker } from './base.js';
import type { GrpcCheckConfig } from './config.js';

const SERVING = 1;
const STATUS_NAMES = ['unknown', 'serving', 'not_serving', 'service_unknown'];

export class GrpcHealthChecker extends HealthChecker {
  readonly request: Buffer;

  constructor(...args: ConstructorParameters<typeof HealthChecker>) {
    super(...args);
    const service = Buffer.from(this.grpc.serviceName);
    const msg = service.length
      ? Buffer.concat([Buffer.from([0x0a]), varint(service.length), service])
      : Buffer.alloc(0);
    const frame = Buffer.alloc(5);
    frame.writeUInt32BE(msg.length, 1);
    this.request = Buffer.concat([frame, msg]);
  }

  get grpc(): GrpcCheckConfig {
    return this.config.checker as GrpcCheckConfig;
  }

  protected makeSession(host: Host): ActiveHealthCheckSession {
    return new GrpcSession(this, host);
  }
}

class GrpcSession extends ActiveHealthCheckSession {
  private session: http2.ClientHttp2Session | undefined;
  private stream: http2.ClientHttp2Stream | undefined;

  constructor(
    private readonly checker: GrpcHealthChecker,
    host: Host,
  ) {
    super(checker, host);
  }

  protected onInterval(id: number): void {
    const tls = this.checker.cluster.config.tls;
    if (!this.session || this.session.destroyed || this.session.closed) {
      const host = this.host;
      const session = http2Module().connect(`${tls ? 'https' : 'http'}://${host.addressString}`, {
        createConnection: () =>
          connectToHost(
            host,
            tls ? { ...tls, options: { ALPNProtocols: ['h2'], ...tls.options } } : undefined,
          ).socket,
      });
      session.unref();
      session.on('error', () => {});
      session.on('close', () => {
        if (this.session === session) this.session = undefined;
      });
      this.session = session;
    }
    const session = this.session;
    const stream = session.request({
      ':method': 'POST',
      ':path': '/grpc.health.v1.Health/Check',
      ':authority': this.checker.hostnameFor(this.host, this.checker.grpc.authority),
      ':scheme': tls ? 'https' : 'http',
      'content-type': 'application/grpc',
      te: 'trailers',
      'user-agent': 'Envoy/HC',
      'grpc-timeout': `${Math.max(1, Math.ceil(this.checker.config.timeoutMs))}m`,
    });
    this.stream = stream;
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (h) => {
      headers = h;
    });
    stream.on('trailers', (t) => {
      trailers = t;
    });
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => this.onRpcComplete(id, headers, trailers, Buffer.concat(chunks)));
    stream.on('error', (e) => this.fail(id, 'NETWORK', `stream error: ${e.message}`));
    stream.on('close', () => {
      if (this.stream === stream) this.stream = undefined;
      this.fail(id, 'NETWORK', 'stream reset');
      if (!this.checker.config.reuseConnection) session.close();
    });
    stream.end(this.checker.request);
  }

  private onRpcComplete(
    id: number,
    headers: http2.IncomingHttpHeaders,
    trailers: http2.IncomingHttpHeaders,
    body: Buffer,
  ): void {
    const httpStatus = Number(headers[':status'] ?? 0);
    const grpcStatus = trailers['grpc-status'] ?? headers['grpc-status'];
    if (httpStatus !== 200) {
      this.fail(id, 'ACTIVE', `non-200 HTTP response (${httpStatus})`);
      return;
    }
    if (!String(headers['content-type'] ?? '').startsWith('application/grpc')) {
      this.fail(id, 'ACTIVE', 'not a gRPC response');
      return;
    }
    if (grpcStatus === undefined) {
      this.fail(id, 'ACTIVE', 'invalid gRPC status');
      return;
    }
    if (String(grpcStatus) !== '0') {
      this.fail(id, 'ACTIVE', `grpc-status=${String(grpcStatus)} ${String(trailers['grpc-message'] ?? '')}`);
      return;
    }
    const status = decodeStatus(body);
    if (status === undefined) {
      this.fail(id, 'ACTIVE', 'invalid grpc.health.v1 RPC payload');
      return;
    }
    if (status !== SERVING) {
      this.fail(id, 'ACTIVE', `service status ${STATUS_NAMES[status] ?? status}`);
      return;
    }
    this.succeed(id);
  }

  protected onTimeout(): void {
    this.stream?.close();
    this.stream = undefined;
    if (!this.checker.config.reuseConnection) {
      this.session?.destroy();
      this.session = undefined;
    }
  }

  protected onDestroy(): void {
    this.stream?.close();
    this.stream = undefined;
    this.session?.destroy();
    this.session = undefined;
  }
}

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}

/** The status of one length-prefixed, uncompressed HealthCheckResponse; undefined if malformed. */
function decodeStatus(body: Buffer): number | undefined {
  if (body.length < 5 || body[0] !== 0) return undefined;
  const len = body.readUInt32BE(1);
  if (body.length !== 5 + len) return undefined;
  const msg = body.subarray(5);
  let status = 0;
  let i = 0;
  while (i < msg.length) {
    const [tag, next] = readVarint(msg, i);
    if (next < 0) return undefined;
    i = next;
    const field = tag >>> 3;
    const wire = tag & 7;
    if (wire === 0) {
      const [v, n2] = readVarint(msg, i);
      if (n2 < 0) return undefined;
      i = n2;
      if (field === 1) status = v;
    } else if (wire === 2) {
      const [l, n2] = readVarint(msg, i);
      if (n2 < 0 || n2 + l > msg.length) return undefined;
      i = n2 + l;
    } else if (wire === 5) i += 4;
    else if (wire === 1) i += 8;
    else return undefined;
  }
  return i === msg.length ? status : undefined;
}

function readVarint(b: Buffer, i: number): [number, number] {
  let v = 0;
  let shift = 0;
  while (i < b.length && shift < 35) {
    const byte = b[i++]!;
    v += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return [v, i];
    shift += 7;
  }
  return [0, -1];
}
