// RANDOM: uniform over hosts, weight-proportional when weights differ.
import type { Host } from '../host.js';
import type { LoadBalancer } from './load-balancer.js';

export class RandomLoadBalancer implements LoadBalancer {
  chooseHost(hosts: readonly Host[]): Host | undefined {
    const n = hosts.length;
    if (n === 0) return undefined;
    let total = 0;
    for (const h of hosts) total += h.weight;
    let x = Math.random() * total;
    for (const h of hosts) {
      x -= h.weight;
      if (x < 0) return h;
    }
    return hosts[n - 1];
  }
}
