// MAGLEV: a lookup table (65537 entries by default) filled from each host's
// permutation (offset and skip from xxHash64 of its address with seeds 0 and
// 1), weighted as Envoy weights it: a host with the largest weight takes a
// slot on every round, one with a third of it every third round.
import { xxHash64 } from '../../common/xxhash.js';
import type { Host } from '../host.js';
import { type LoadBalancer, type LoadBalancerContext, random64 } from './load-balancer.js';

export class MaglevLoadBalancer implements LoadBalancer {
  private lastHosts: readonly Host[] | undefined;
  private table: Host[] = [];

  constructor(private readonly tableSize: number) {}

  private build(hosts: readonly Host[]): void {
    this.lastHosts = hosts;
    const m = BigInt(this.tableSize);
    const total = hosts.reduce((a, h) => a + h.weight, 0);
    const entries = hosts.map((h) => ({
      host: h,
      offset: Number(xxHash64(h.addressString, 0n) % m),
      skip: Number((xxHash64(h.addressString, 1n) % (m - 1n)) + 1n),
      weight: h.weight / total,
      target: 0,
      next: 0,
    }));
    const maxW = Math.max(...entries.map((e) => e.weight));
    const size = this.tableSize;
    const table: Array<Host | undefined> = new Array(size);
    let filled = 0;
    for (let iteration = 1; filled < size; iteration++) {
      for (const e of entries) {
        if (filled >= size) break;
        if (iteration * e.weight < e.target) continue;
        e.target += maxW;
        let c = (e.offset + e.skip * e.next) % size;
        while (table[c] !== undefined) {
          e.next++;
          c = (e.offset + e.skip * e.next) % size;
        }
        table[c] = e.host;
        e.next++;
        filled++;
      }
    }
    this.table = table as Host[];
  }

  chooseHost(hosts: readonly Host[], ctx?: LoadBalancerContext): Host | undefined {
    if (hosts.length === 0) return undefined;
    if (hosts !== this.lastHosts) this.build(hosts);
    const h = ctx?.hashKey ?? random64();
    return this.table[Number(h % BigInt(this.tableSize))];
  }
}
