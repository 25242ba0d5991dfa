// RING_HASH: Ketama-style consistent hashing, built as Envoy builds it: each
// host gets ring entries in proportion to its weight, hashed with xxHash64
// over "<address>_<n>", the ring sized between minimum_ring_size (1024) and
// maximum_ring_size (8M). A request hash picks the first entry at or after it.
import { xxHash64 } from '../../common/xxhash.js';
import type { Host } from '../host.js';
import { type LoadBalancer, type LoadBalancerContext, random64 } from './load-balancer.js';

export interface RingHashOptions {
  minimumRingSize: number;
  maximumRingSize: number;
}

export class RingHashLoadBalancer implements LoadBalancer {
  private lastHosts: readonly Host[] | undefined;
  private hashes = new BigUint64Array(0);
  private owners: Host[] = [];

  constructor(private readonly opts: RingHashOptions) {}

  private build(hosts: readonly Host[]): void {
    this.lastHosts = hosts;
    const total = hosts.reduce((a, h) => a + h.weight, 0);
    const minW = Math.min(...hosts.map((h) => h.weight / total));
    const scale = Math.min(Math.ceil(minW * this.opts.minimumRingSize) / minW, this.opts.maximumRingSize);
    const entries: Array<[bigint, Host]> = [];
    let current = 0;
    let target = 0;
    for (const h of hosts) {
      target += (scale * h.weight) / total;
      let i = 0;
      while (current < target) {
        entries.push([xxHash64(`${h.addressString}_${i}`), h]);
        i++;
        current++;
      }
    }
    entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    this.hashes = BigUint64Array.from(entries.map((e) => e[0]));
    this.owners = entries.map((e) => e[1]);
  }

  chooseHost(hosts: readonly Host[], ctx?: LoadBalancerContext): Host | undefined {
    if (hosts.length === 0) return undefined;
    if (hosts !== this.lastHosts) this.build(hosts);
    // Without a hash (no hash policy applied), Envoy picks at random.
    const h = ctx?.hashKey ?? random64();
    const a = this.hashes;
    let lo = 0;
    let hi = a.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (a[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    return this.owners[lo === a.length ? 0 : lo];
  }
}
