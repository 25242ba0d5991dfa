// Route configurations that arrive by RDS: a connection manager with `rds`
// holds a RouteConfigHolder by name; each new version replaces the table for
// streams that start afterwards (a stream keeps the table it started with).

import type { JsonObject } from '../config/proto-json.js';
import { ReadContext } from '../config/reader.js';
import { compileRouteConfiguration, type RouteTable } from './route-config.js';

/** config.core.v3.ConfigSource, as Herald supports it. */
export type ConfigSourceConfig =
  | { kind: 'ads'; initialFetchTimeoutMs: number }
  | { kind: 'path'; path: string; initialFetchTimeoutMs: number }
  /** api_config_source: the per-type discovery service of a control plane (a static cluster). */
  | { kind: 'api'; apiType: 'GRPC' | 'DELTA_GRPC'; cluster: string; initialFetchTimeoutMs: number };

/** A route table with no virtual hosts: every request is 404 NR until RDS delivers one. */
function emptyTable(name: string): RouteTable {
  return compileRouteConfiguration(new ReadContext().root({ name }), { validateClustersDefault: false });
}

export class RouteConfigHolder {
  table: RouteTable;
  version = '';
  lastUpdated = 0;
  /** The canonical resource, for /config_dump. */
  resource: JsonObject | undefined;
  warm = false;
  private readonly waiters: Array<() => void> = [];

  constructor(
    readonly name: string,
    readonly source: ConfigSourceConfig,
  ) {
    this.table = emptyTable(name);
  }

  update(table: RouteTable, resource: JsonObject, version: string): void {
    this.table = table;
    this.resource = resource;
    this.version = version;
    this.lastUpdated = Date.now();
    this.markWarm();
  }

  /** Resolves once the first version arrived (or the initial fetch gave up). */
  whenWarm(): Promise<void> {
    if (this.warm) return Promise.resolve();
    return new Promise((r) => this.waiters.push(r));
  }

  markWarm(): void {
    if (this.warm) return;
    this.warm = true;
    for (const w of this.waiters.splice(0)) w();
  }
}

/** Every RDS route configuration the server's connection managers use, by name. */
export class RdsRegistry {
  private readonly holders = new Map<string, RouteConfigHolder>();
  /** Told of each name the first time a connection manager asks for it (to subscribe). */
  onNewName: ((name: string, source: ConfigSourceConfig) => void) | undefined;

  holder(name: string, source: ConfigSourceConfig): RouteConfigHolder {
    let h = this.holders.get(name);
    if (!h) {
      h = new RouteConfigHolder(name, source);
      this.holders.set(name, h);
      this.onNewName?.(name, source);
    }
    return h;
  }

  /** A table arrived (a worker may get it before the listener that uses it). */
  update(name: string, table: RouteTable, resource: JsonObject, version: string): void {
    let h = this.holders.get(name);
    if (!h)
      this.holders.set(
        name,
        (h = new RouteConfigHolder(name, { kind: 'ads', initialFetchTimeoutMs: 15000 })),
      );
    h.update(table, resource, version);
  }

  get(name: string): RouteConfigHolder | undefined {
    return this.holders.get(name);
  }

  all(): RouteConfigHolder[] {
    return [...this.holders.values()];
  }
}
