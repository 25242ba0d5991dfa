// One registry for every kind of extension, keyed by Envoy type URL (and by
// Envoy's reverse-DNS name, for configs that name an extension without a
// typed_config). Adding an extension is a file and one register() call in
// src/extensions/builtin.ts.
import type { Reader } from '../config/reader.js';
import type { ServerContext } from '../server/server-context.js';

export type ExtensionCategory =
  | 'listener_filter'
  | 'network_filter'
  | 'http_filter'
  | 'access_logger'
  | 'transport_socket'
  | 'cluster_type'
  | 'lb_policy'
  | 'upstream_options';

/** What a factory is given at config time besides its own config. */
export interface FactoryContext {
  /** Path of the extension's config in the bootstrap, for error messages. */
  path: string;
  /** The server this config is for (its cluster manager exists once it starts). */
  server: ServerContext;
  /** Compiles a nested extension (e.g. HCM compiling its HTTP filters). */
  compileExtension<T>(category: ExtensionCategory, holder: Reader, nameKey?: string, configKey?: string): T;
}

export interface ExtensionFactory<T = unknown> {
  /** Envoy's name, e.g. `envoy.filters.http.router`. */
  name: string;
  /** Full type URLs accepted, e.g. `type.googleapis.com/envoy.extensions.filters.http.router.v3.Router`. */
  typeUrls: string[];
  category: ExtensionCategory;
  /** Validates the config once and returns what runs per connection/stream. */
  create(config: Reader, ctx: FactoryContext): T;
  /** HTTP filters with per-route config: the type URLs accepted in typed_per_filter_config. */
  routeConfigTypeUrls?: string[];
  /** Compiles a route's (or virtual host's) typed_per_filter_config entry for this filter. */
  createRouteConfig?(config: Reader): unknown;
}

export class ExtensionRegistry {
  private readonly byUrl = new Map<string, ExtensionFactory>();
  private readonly byName = new Map<string, ExtensionFactory>();
  private readonly byRouteUrl = new Map<string, ExtensionFactory>();

  register<T>(factory: ExtensionFactory<T>): void {
    for (const url of factory.typeUrls) {
      const key = `${factory.category}|${url}`;
      if (this.byUrl.has(key)) throw new Error(`extension ${url} registered twice`);
      this.byUrl.set(key, factory as ExtensionFactory);
    }
    this.byName.set(`${factory.category}|${factory.name}`, factory as ExtensionFactory);
    for (const url of factory.routeConfigTypeUrls ?? [])
      this.byRouteUrl.set(url, factory as ExtensionFactory);
  }

  /** The HTTP filter whose per-route config has this type URL. */
  byRouteConfigTypeUrl(typeUrl: string): ExtensionFactory | undefined {
    return this.byRouteUrl.get(typeUrl);
  }

  byTypeUrl(category: ExtensionCategory, typeUrl: string): ExtensionFactory | undefined {
    return this.byUrl.get(`${category}|${typeUrl}`);
  }

  byExtensionName(category: ExtensionCategory, name: string): ExtensionFactory | undefined {
    return this.byName.get(`${category}|${name}`);
  }

  list(category?: ExtensionCategory): ExtensionFactory[] {
    const seen = new Set<ExtensionFactory>();
    for (const f of this.byUrl.values()) if (!category || f.category === category) seen.add(f);
    return [...seen];
  }
}

export const registry = new ExtensionRegistry();
