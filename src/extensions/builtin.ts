// Every extension Herald ships, registered in one place.
import { httpConnectionManagerFactory } from '../http/conn-manager-config.js';
import { tcpProxyFactory } from '../network/tcp-proxy.js';
import { routerFactory } from '../router/router-filter.js';
import { httpInspectorFactory } from './filters/listener/http-inspector.js';
import { tlsInspectorFactory } from './filters/listener/tls-inspector.js';
import {
  leastRequestPolicy,
  maglevPolicy,
  randomPolicy,
  ringHashPolicy,
  roundRobinPolicy,
} from './load_balancing_policies/policies.js';
import { registry } from './registry.js';

let done = false;

export function registerBuiltinExtensions(): void {
  if (done) return;
  done = true;
  // Listener filters
  registry.register(tlsInspectorFactory);
  registry.register(httpInspectorFactory);
  // Network filters
  registry.register(httpConnectionManagerFactory);
  registry.register(tcpProxyFactory);
  // Load-balancing policies (load_balancing_policy)
  for (const p of [roundRobinPolicy, leastRequestPolicy, randomPolicy, ringHashPolicy, maglevPolicy])
    registry.register(p);
  // HTTP filters
  registry.register(routerFactory);
}
