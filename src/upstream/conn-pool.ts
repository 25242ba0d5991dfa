// The cluster's connection pools, one per host, for the cluster's upstream protocol.
import type { Headers } from '../common/substitution-formatter.js';
import { AutoConnPool } from './auto-conn-pool.js';
import type { Cluster } from './cluster.js';
import type { Host } from './host.js';
import { Http1ConnPool } from './http1-conn-pool.js';
import { Http2ConnPool } from './http2-conn-pool.js';
import type { NewStreamOptions, UpstreamCallbacks, UpstreamRequest } from './upstream-request.js';

interface HostPool {
  newStream(headers: Headers, opts: NewStreamOptions, cb: UpstreamCallbacks): UpstreamRequest;
  destroy(): void;
}

export class ConnPoolSet {
  private readonly pools = new Map<string, HostPool>();

  constructor(private readonly cluster: Cluster) {}

  /** The pool for a host; `downstreamHttp2` picks the protocol when the cluster follows the request's. */
  forHost(host: Host, downstreamHttp2 = false): HostPool {
    const cfg = this.cluster.config;
    if (cfg.protocol === 'auto' && cfg.tls) {
      let p = this.pools.get(host.addressString);
      if (!p) {
        const tls = cfg.tls;
        p = new AutoConnPool(host, this.cluster.stats, tls, (proto) => this.make(host, proto === 'http2'));
        this.pools.set(host.addressString, p);
      }
      return p;
    }
    const h2 = cfg.protocol === 'http2' || (cfg.protocol === 'downstream' && downstreamHttp2);
    const key = h2 && cfg.protocol === 'downstream' ? `h2|${host.addressString}` : host.addressString;
    let p = this.pools.get(key);
    if (!p) {
      p = this.make(host, h2);
      this.pools.set(key, p);
    }
    return p;
  }

  private make(host: Host, h2: boolean): Http1ConnPool | Http2ConnPool {
    const cfg = this.cluster.config;
    return h2
      ? new Http2ConnPool(
          host,
          this.cluster.stats,
          cfg.idleTimeoutMs,
          cfg.maxRequestsPerConnection,
          cfg.tls,
          cfg.http2,
        )
      : new Http1ConnPool(
          host,
          this.cluster.stats,
          {
            idleTimeoutMs: cfg.idleTimeoutMs,
            maxRequestsPerConnection: cfg.maxRequestsPerConnection,
            bufferLimit: cfg.bufferLimitBytes,
          },
          cfg.tls,
        );
  }

  /** Drops pools of hosts that left the cluster. */
  retainOnly(addresses: Set<string>): void {
    for (const [k, p] of this.pools) {
      if (!addresses.has(k.startsWith('h2|') ? k.slice(3) : k)) {
        p.destroy();
        this.pools.delete(k);
      }
    }
  }

  destroy(): void {
    for (const p of this.pools.values()) p.destroy();
    this.pools.clear();
  }
}
