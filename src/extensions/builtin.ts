// Every extension Herald ships, registered in one place.
import { httpConnectionManagerFactory } from '../http/conn-manager-config.js';
import { tcpProxyFactory } from '../network/tcp-proxy.js';
import { routerFactory } from '../router/router-filter.js';
import {
  fileAccessLogFactory,
  stderrAccessLogFactory,
  stdoutAccessLogFactory,
} from './access_loggers/file.js';
import { bufferFactory } from './filters/http/buffer.js';
import { faultFactory } from './filters/http/fault.js';
import { healthCheckFactory } from './filters/http/health-check.js';
import { localRateLimitFactory } from './filters/http/local-ratelimit.js';
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
  // Access loggers
  for (const f of [fileAccessLogFactory, stdoutAccessLogFactory, stderrAccessLogFactory])
    registry.register(f);
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
  registry.register(healthCheckFactory);
  registry.register(bufferFactory);
  registry.register(faultFactory);
  registry.register(localRateLimitFactory);
}
