// Load balancers pick a host from one priority's host list. Priority
// selection (Envoy's overprovisioned priority load) happens in PrioritySet.
import type { Host } from '../host.js';

export interface LoadBalancerContext {
  /** Hash for consistent-hash policies (later). */
  hashKey?: bigint;
}

export interface LoadBalancer {
  chooseHost(hosts: readonly Host[], ctx?: LoadBalancerContext): Host | undefined;
}
