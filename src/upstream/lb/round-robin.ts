// ROUND_ROBIN: plain rotation when weights are equal; smooth weighted
// round robin otherwise (same sequence shape as Envoy's EDF scheduler:
// each host gets its weight's share, interleaved rather than in bursts).
import type { Host } from '../host.js';
import type { LoadBalancer } from './load-balancer.js';

export class RoundRobinLoadBalancer implements LoadBalancer {
  private next = 0;
  private current = new WeakMap<Host, number>();
  private lastHosts: readonly Host[] | undefined;
  private weighted = false;

  chooseHost(hosts: readonly Host[]): Host | undefined {
    const n = hosts.length;
    if (n === 0) return undefined;
    if (hosts !== this.lastHosts) {
      this.lastHosts = hosts;
      const w0 = hosts[0]!.weight;
      this.weighted = hosts.some((h) => h.weight !== w0);
      this.current = new WeakMap();
      // Envoy starts each worker at a random offset so workers do not move in lockstep.
      this.next = Math.floor(Math.random() * n);
    }
    if (!this.weighted) {
      const h = hosts[this.next % n]!;
      this.next = (this.next + 1) % n;
      return h;
    }
    let total = 0;
    let best: Host | undefined;
    let bestCur = -Infinity;
    for (const h of hosts) {
      const cur = (this.current.get(h) ?? 0) + h.weight;
      this.current.set(h, cur);
      total += h.weight;
      if (cur > bestCur) {
        bestCur = cur;
        best = h;
      }
    }
    this.current.set(best!, bestCur - total);
    return best;
  }
}
