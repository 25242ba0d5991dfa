// LEAST_REQUEST: power of `choice_count` random choices (default 2), the host
// with fewer active requests wins. With unequal weights Envoy divides weight
// by (active + 1) ^ bias (active_request_bias, default 1.0); Herald does the same.
import type { Host } from '../host.js';
import type { LoadBalancer } from './load-balancer.js';

export class LeastRequestLoadBalancer implements LoadBalancer {
  constructor(private readonly choiceCount: number) {}

  chooseHost(hosts: readonly Host[]): Host | undefined {
    const n = hosts.length;
    if (n === 0) return undefined;
    if (n === 1) return hosts[0];
    const w0 = hosts[0]!.weight;
    const weighted = hosts.some((h) => h.weight !== w0);
    let best: Host | undefined;
    let bestScore = Infinity;
    for (let i = 0; i < this.choiceCount; i++) {
      const h = hosts[Math.floor(Math.random() * n)]!;
      const score = weighted ? (h.activeRequests + 1) / h.weight : h.activeRequests;
      if (score < bestScore) {
        bestScore = score;
        best = h;
      }
    }
    return best;
  }
}
