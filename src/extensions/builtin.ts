// Every extension Herald ships, registered in one place.
import { httpConnectionManagerFactory } from '../http/conn-manager-config.js';
import { tcpProxyFactory } from '../network/tcp-proxy.js';
import { routerFactory } from '../router/router-filter.js';
import { registry } from './registry.js';

let done = false;

export function registerBuiltinExtensions(): void {
  if (done) return;
  done = true;
  // Network filters
  registry.register(httpConnectionManagerFactory);
  registry.register(tcpProxyFactory);
  // HTTP filters
  registry.register(routerFactory);
}
