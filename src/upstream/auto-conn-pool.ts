// auto_config: the upstream protocol is chosen by ALPN on the first TLS
// connection to a host (h2, else HTTP/1.1), and that connection is handed to
// the pool of the chosen protocol. Requests that arrive while the first
// connection is being made wait for it, their operations queued.
import type net from 'node:net';
import type { Headers } from '../common/substitution-formatter.js';
import { timerMs } from '../common/timers.js';
import type { ClusterStats } from './cluster.js';
import { DeferredRequest } from './deferred-request.js';
import type { Host } from './host.js';
import type { Http1ConnPool } from './http1-conn-pool.js';
import { Http2ConnPool } from './http2-conn-pool.js';
import { connectToHost, type UpstreamTlsConfig } from './transport-socket.js';
import type { NewStreamOptions, UpstreamCallbacks, UpstreamRequest } from './upstream-request.js';

export class AutoConnPool {
  private chosen: Http1ConnPool | Http2ConnPool | undefined;
  private waiting: DeferredRequest[] = [];
  private probing = false;

  constructor(
    private readonly host: Host,
    private readonly stats: ClusterStats,
    private readonly tls: UpstreamTlsConfig,
    private readonly make: (protocol: 'http1' | 'http2') => Http1ConnPool | Http2ConnPool,
  ) {}

  newStream(headers: Headers, opts: NewStreamOptions, cb: UpstreamCallbacks): UpstreamRequest {
    if (this.chosen) return this.chosen.newStream(headers, opts, cb);
    const req = new DeferredRequest(headers, opts, cb, (r) => {
      this.waiting = this.waiting.filter((w) => w !== r);
    });
    this.waiting.push(req);
    if (!this.probing) this.probe(opts.connectTimeoutMs);
    return req;
  }

  private probe(connectTimeoutMs: number): void {
    this.probing = true;
    const { socket } = connectToHost(this.host, {
      ...this.tls,
      options: { ...this.tls.options, ALPNProtocols: ['h2', 'http/1.1'] },
    });
    const timer = setTimeout(() => {
      this.stats.upstream_cx_connect_timeout.inc();
      socket.destroy();
    }, timerMs(connectTimeoutMs));
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      socket.removeListener('error', onError);
      socket.removeListener('close', onClose);
      const tlsSocket = socket as net.Socket & { alpnProtocol?: string | false };
      const pool = this.make(tlsSocket.alpnProtocol === 'h2' ? 'http2' : 'http1');
      this.chosen = pool;
      this.probing = false;
      const waiting = this.waiting;
      this.waiting = [];
      let first: net.Socket | undefined = socket;
      for (const w of waiting) {
        // The probe connection carries the first request (HTTP/1) or the first session (HTTP/2).
        let real: UpstreamRequest;
        if (pool instanceof Http2ConnPool) {
          pool.adopted = first;
          real = pool.newStream(w.headers, w.opts, w.cb);
        } else {
          real = pool.newStream(w.headers, w.opts, w.cb, first);
        }
        first = undefined;
        w.attach(real);
      }
      if (first) first.destroy();
    });
    const onError = () => {};
    const onClose = () => {
      clearTimeout(timer);
      this.probing = false;
      this.stats.upstream_cx_connect_fail.inc();
      const waiting = this.waiting;
      this.waiting = [];
      for (const w of waiting) w.cb.onReset('connection_failure', 'connection failure');
    };
    socket.on('error', onError);
    socket.once('close', onClose);
  }

  drain(): void {
    this.chosen?.drain();
  }

  destroy(): void {
    this.chosen?.destroy();
  }
}
