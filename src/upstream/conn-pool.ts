// The cluster's connection pools, one per host, for the cluster's upstream protocol.
import type { Headers } from '../common/substitution-formatter.js';
import { AutoConnPool } from './auto-conn-pool.js';
import type { Cluster } from './cluster.js';
import type { Host } from './host.js';
import { Http1ConnPool } from './http1-conn-pool.js';
import { Http2ConnPool } from './http2-conn-pool.js';
import type { ResourcePriority } from './resource-manager.js';
import type { NewStreamOptions, UpstreamCallbacks, UpstreamRequest } from './upstream-request.js';

interface HostPool {
  newStream(headers: Headers, opts: NewStreamOptions, cb: UpstreamCallbacks): UpstreamRequest;
  /** No more reuse: idle connections close now, busy ones after their request. */
  drain(): void;
  destroy(): void;
}

export class ConnPoolSet {
  private readonly pools = new Map<string, HostPool>();
  /** forHost's answers by host object, so the hot path builds no key string (4 slots: priority x h2). */
  private byHost = new WeakMap<Host, Array<HostPool | undefined>>();

  constructor(private readonly cluster: Cluster) {}

  /**
   * The pool for a host at a routing priority (each priority has its own pools and circuit
   * breakers, as in Envoy); `downstreamHttp2` picks the protocol when the cluster follows the
   * request's.
   */
  forHost(host: Host, downstreamHttp2 = false, priority: ResourcePriority = 'DEFAULT'): HostPool {
    const slot = (priority === 'HIGH' ? 2 : 0) + (downstreamHttp2 ? 1 : 0);
    let slots = this.byHost.get(host);
    const cached = slots?.[slot];
    if (cached) return cached;
    const p = this.lookup(host, downstreamHttp2, priority);
    if (!slots) this.byHost.set(host, (slots = [undefined, undefined, undefined, undefined]));
    slots[slot] = p;
    return p;
  }

  private lookup(host: Host, downstreamHttp2: boolean, priority: ResourcePriority): HostPool {
    const cfg = this.cluster.config;
    const prio = priority === 'HIGH' ? 'H' : '';
    if (cfg.protocol === 'auto' && cfg.tls) {
      const key = `${prio}|${host.addressString}`;
      let p = this.pools.get(key);
      if (!p) {
        const tls = cfg.tls;
        p = new AutoConnPool(host, this.cluster.stats, tls, (proto) =>
          this.make(host, proto === 'http2', priority),
        );
        this.pools.set(key, p);
      }
      return p;
    }
    const h2 = cfg.protocol === 'http2' || (cfg.protocol === 'downstream' && downstreamHttp2);
    const key = `${prio}${h2 && cfg.protocol === 'downstream' ? 'h2' : ''}|${host.addressString}`;
    let p = this.pools.get(key);
    if (!p) {
      p = this.make(host, h2, priority);
      this.pools.set(key, p);
    }
    return p;
  }

  private make(host: Host, h2: boolean, priority: ResourcePriority): Http1ConnPool | Http2ConnPool {
    const cfg = this.cluster.config;
    const limits = {
      resources: this.cluster.resources[priority],
      perHostMaxConnections: cfg.circuitBreakers.perHostMaxConnections[priority],
    };
    return h2
      ? new Http2ConnPool(
          host,
          this.cluster.stats,
          cfg.idleTimeoutMs,
          cfg.maxRequestsPerConnection,
          cfg.tls,
          cfg.http2,
          limits,
        )
      : new Http1ConnPool(
          host,
          this.cluster.stats,
          {
            idleTimeoutMs: cfg.idleTimeoutMs,
            maxRequestsPerConnection: cfg.maxRequestsPerConnection,
            bufferLimit: cfg.bufferLimitBytes,
            ...limits,
          },
          cfg.tls,
        );
  }

  /** Drops pools of hosts that left the cluster. */
  retainOnly(addresses: Set<string>): void {
    this.byHost = new WeakMap();
    for (const [k, p] of this.pools) {
      if (!addresses.has(k.slice(k.indexOf('|') + 1))) {
        // Requests in flight to a host that left finish; its connections close after them.
        p.drain();
        this.pools.delete(k);
      }
    }
  }

  drain(): void {
    this.byHost = new WeakMap();
    for (const p of this.pools.values()) p.drain();
    this.pools.clear();
  }

  destroy(): void {
    this.byHost = new WeakMap();
    for (const p of this.pools.values()) p.destroy();
    this.pools.clear();
  }
}
