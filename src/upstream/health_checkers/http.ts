// HTTP health checks (HealthCheck.http_health_check), as Envoy's HttpHealthCheckerImpl:
// a request to `path` with `user-agent: Envoy/HC`; an expected status passes, anything
// else fails the host at once unless the status is retriable. A failing answer carrying
// `x-envoy-immediate-health-check-fail` also excludes the host; `x-envoy-degraded` on a
// passing one marks it degraded.
import type http from 'node:http';
import type http2 from 'node:http2';
import { http2Module, httpModule } from '../../common/lazy-modules.js';
import type { Headers } from '../../common/substitution-formatter.js';
import { StreamInfo } from '../../http/stream-info.js';
import { HealthFlag, type Host } from '../host.js';
import { connectToHost } from '../transport-socket.js';
import { ActiveHealthCheckSession, HealthChecker } from './base.js';
import type { HttpCheckConfig } from './config.js';
import { payloadMatches } from './payload.js';

const USER_AGENT = 'Envoy/HC';

export class HttpHealthChecker extends HealthChecker {
  get http(): HttpCheckConfig {
    return this.config.checker as HttpCheckConfig;
  }

  protected makeSession(host: Host): ActiveHealthCheckSession {
    return new HttpSession(this, host);
  }
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

class HttpSession extends ActiveHealthCheckSession {
  private agent: http.Agent | undefined;
  private req: http.ClientRequest | undefined;
  private session: http2.ClientHttp2Session | undefined;
  private stream: http2.ClientHttp2Stream | undefined;

  constructor(
    private readonly checker: HttpHealthChecker,
    host: Host,
  ) {
    super(checker, host);
  }

  private requestHeaders(): Headers {
    const c = this.checker.http;
    const h: Headers = {
      ':method': c.method,
      ':path': c.path,
      ':authority': this.checker.hostnameFor(this.host, c.host),
      ':scheme': this.checker.cluster.config.tls ? 'https' : 'http',
      'user-agent': USER_AGENT,
    };
    if (!c.headers.empty) {
      const info = new StreamInfo();
      info.upstreamCluster = this.checker.cluster.name;
      info.upstreamHost = this.host.addressString;
      c.headers.apply(h, {
        info,
        requestHeaders: h,
        protocol: c.codec === 'HTTP2' ? 'HTTP/2' : 'HTTP/1.1',
        remoteAddress: '127.0.0.1',
        remotePort: 0,
        directRemoteAddress: '127.0.0.1',
        directRemotePort: 0,
        localAddress: '127.0.0.1',
        localPort: 0,
      });
    }
    if (c.send) h['content-length'] = String(c.send.length);
    return h;
  }

  protected onInterval(id: number): void {
    if (this.checker.http.codec === 'HTTP2') this.checkHttp2(id);
    else this.checkHttp1(id);
  }

  private checkHttp1(id: number): void {
    const c = this.checker.http;
    const tls = this.checker.cluster.config.tls;
    const reuse = this.checker.config.reuseConnection;
    if (!this.agent || !reuse) {
      this.agent?.destroy();
      const agent = new (httpModule().Agent)({ keepAlive: reuse, maxSockets: 1 });
      const host = this.host;
      agent.createConnection = () => connectToHost(host, tls).socket;
      this.agent = agent;
    }
    const h = this.requestHeaders();
    const headers: http.OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(h)) if (!k.startsWith(':') && v !== undefined) headers[k] = v;
    headers.host = h[':authority'] as string;
    const req = httpModule().request({
      host: this.host.address,
      port: this.host.port,
      method: c.method,
      path: c.path,
      headers,
      agent: this.agent,
      setHost: false,
    });
    this.req = req;
    // A check must never keep the process alive.
    req.on('socket', (s) => s.unref());
    req.on('error', (e) => this.fail(id, 'NETWORK', `connection error: ${e.message}`));
    req.on('response', (res) => {
      const body: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        if (c.receive.length === 0) return;
        const room = c.responseBufferSize === 0 ? chunk.length : c.responseBufferSize - size;
        if (room <= 0) return;
        const part = chunk.subarray(0, room);
        body.push(part);
        size += part.length;
      });
      res.on('end', () => {
        if (this.req === req) this.req = undefined;
        this.onAnswer(id, { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(body) });
      });
      res.on('error', (e) => this.fail(id, 'NETWORK', `connection error: ${e.message}`));
    });
    req.end(c.send);
  }

  private checkHttp2(id: number): void {
    const c = this.checker.http;
    if (!this.session || this.session.destroyed || this.session.closed) {
      const tls = this.checker.cluster.config.tls;
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
    const h = this.requestHeaders();
    const stream = session.request(h as http2.OutgoingHttpHeaders, { endStream: !c.send });
    this.stream = stream;
    let status = 0;
    let headers: Answer['headers'] = {};
    const body: Buffer[] = [];
    let size = 0;
    stream.on('response', (hs) => {
      status = Number(hs[':status'] ?? 0);
      headers = hs;
    });
    stream.on('data', (chunk: Buffer) => {
      if (c.receive.length === 0) return;
      const room = c.responseBufferSize === 0 ? chunk.length : c.responseBufferSize - size;
      if (room <= 0) return;
      body.push(chunk.subarray(0, room));
      size += Math.min(room, chunk.length);
    });
    stream.on('end', () => this.onAnswer(id, { status, headers, body: Buffer.concat(body) }));
    stream.on('error', (e) => this.fail(id, 'NETWORK', `stream error: ${e.message}`));
    stream.on('close', () => {
      if (this.stream === stream) this.stream = undefined;
      if (!status) this.fail(id, 'NETWORK', 'stream reset');
    });
    if (c.send) stream.end(c.send);
    if (!this.checker.config.reuseConnection) stream.on('close', () => session.close());
  }

  private onAnswer(id: number, a: Answer): void {
    const c = this.checker.http;
    const immediateFail = a.headers['x-envoy-immediate-health-check-fail'] !== undefined;
    if (c.receive.length > 0 && !payloadMatches(c.receive, a.body)) {
      if (immediateFail) this.host.healthFlags |= HealthFlag.EXCLUDED_VIA_IMMEDIATE_HC_FAIL;
      this.fail(id, 'ACTIVE', `status_code=${a.status} reason=payload_mismatch`);
      return;
    }
    if (!inRanges(a.status, c.expectedStatuses.length ? c.expectedStatuses : [[200, 201]])) {
      if (immediateFail) this.host.healthFlags |= HealthFlag.EXCLUDED_VIA_IMMEDIATE_HC_FAIL;
      this.fail(
        id,
        'ACTIVE',
        `status_code=${a.status} reason=unexpected_status`,
        inRanges(a.status, c.retriableStatuses),
      );
      return;
    }
    this.succeed(id, a.headers['x-envoy-degraded'] !== undefined);
  }

  protected onTimeout(): void {
    this.req?.destroy();
    this.req = undefined;
    // Envoy closes the connection of a check that timed out.
    this.agent?.destroy();
    this.agent = undefined;
    this.stream?.close();
    this.stream = undefined;
    this.session?.destroy();
    this.session = undefined;
  }

  protected onDestroy(): void {
    this.onTimeout();
  }
}

function inRanges(status: number, ranges: ReadonlyArray<[number, number]>): boolean {
  for (const [start, end] of ranges) if (status >= start && status < end) return true;
  return false;
}
