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

/** A uniformly random 64-bit hash, for consistent-hash balancers given no request hash. */
export function random64(): bigint {
  return (BigInt((Math.random() * 0x100000000) >>> 0) << 32n) | BigInt((Math.random() * 0x100000000) >>> 0);
}
