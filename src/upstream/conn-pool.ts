// Upstream connection pools, one per host and protocol.
// HTTP/1.1: a keep-alive agent handing out one request per connection at a
// time, most recently used connection first (as Envoy's pool does), so idle
// connections age out instead of all being kept warm.
// HTTP/2: one multiplexed session per host, replaced when it closes or goes away.
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import type { Cluster } from './cluster.js';
import type { Host } from './host.js';

class CountingAgent extends http.Agent {
  constructor(
    private readonly cluster: Cluster,
    opts: http.AgentOptions,
  ) {
    super(opts);
  }

  // The agent also accepts a socket returned synchronously; its callback is only for async creation.
  override createConnection(options: http.ClientRequestArgs): net.Socket {
    const stats = this.cluster.stats;
    const s = net.createConnection(options as net.NetConnectOpts);
    s.setNoDelay(true);
    stats.upstream_cx_total.inc();
    stats.upstream_cx_active.inc();
    s.once('close', () => stats.upstream_cx_active.dec());
    return s;
  }
}

export class ConnPoolSet {
  private readonly h1 = new Map<string, CountingAgent>();
  private readonly h2 = new Map<string, http2.ClientHttp2Session>();

  constructor(private readonly cluster: Cluster) {}

  http1Agent(host: Host): http.Agent {
    let a = this.h1.get(host.addressString);
    if (!a) {
      a = new CountingAgent(this.cluster, {
        keepAlive: true,
        scheduling: 'lifo',
        // Idle pooled connections are closed after the pool idle timeout.
        timeout: this.cluster.config.idleTimeoutMs,
      });
      this.h1.set(host.addressString, a);
    }
    return a;
  }

  http2Session(host: Host): http2.ClientHttp2Session {
    const key = host.addressString;
    const existing = this.h2.get(key);
    if (existing && !existing.closed && !existing.destroyed) return existing;
    const stats = this.cluster.stats;
    const session = http2.connect(`http://${key}`, {
      createConnection: () => {
        const s = net.createConnection({ host: host.address, port: host.port });
        s.setNoDelay(true);
        return s;
      },
    });
    stats.upstream_cx_total.inc();
    stats.upstream_cx_active.inc();
    const forget = () => {
      if (this.h2.get(key) === session) this.h2.delete(key);
    };
    session.once('close', () => {
      stats.upstream_cx_active.dec();
      forget();
    });
    session.once('goaway', forget);
    session.on('error', forget);
    session.setTimeout(this.cluster.config.idleTimeoutMs, () => {
      if (!session.closed) session.close();
    });
    this.h2.set(key, session);
    return session;
  }

  /** Drops pools of hosts that left the cluster. */
  retainOnly(addresses: Set<string>): void {
    for (const [k, a] of this.h1) {
      if (!addresses.has(k)) {
        a.destroy();
        this.h1.delete(k);
      }
    }
    for (const [k, s] of this.h2) {
      if (!addresses.has(k)) {
        s.close();
        this.h2.delete(k);
      }
    }
  }

  destroy(): void {
    for (const a of this.h1.values()) a.destroy();
    for (const s of this.h2.values()) s.destroy();
    this.h1.clear();
    this.h2.clear();
  }
}
