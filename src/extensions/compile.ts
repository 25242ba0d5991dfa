// Resolves `{name, typed_config}` pairs to registered extension factories.
import type { Reader } from '../config/reader.js';
import type { ExtensionCategory, ExtensionFactory, FactoryContext } from './registry.js';
import { registry } from './registry.js';

const CATEGORY_WORDS: Record<ExtensionCategory, string> = {
  listener_filter: 'listener filter',
  network_filter: 'network filter',
  http_filter: 'HTTP filter',
  access_logger: 'access logger',
  transport_socket: 'transport socket',
  cluster_type: 'cluster type',
  lb_policy: 'load-balancing policy',
  upstream_options: 'upstream protocol options',
};

/**
 * Finds the factory for an extension by its typed_config's `@type`, or by its
 * name when no typed_config is given (as Envoy allows for config-less filters).
 */
export function findExtension(
  category: ExtensionCategory,
  holder: Reader,
  nameKey = 'name',
  configKey = 'typed_config',
): { factory: ExtensionFactory; config: Reader } {
  const name = holder.str(nameKey, '');
  const cfg = holder.msg(configKey);
  if (cfg) {
    const url = cfg.typeUrl ?? '';
    const factory = registry.byTypeUrl(category, url);
    if (!factory)
      throw holder.error(
        configKey,
        `${CATEGORY_WORDS[category]} '${name}' (${url}) is not supported by Herald` +
          (registry.list(category).length
            ? ` (supported: ${registry
                .list(category)
                .map((f) => f.name)
                .join(', ')})`
            : ''),
      );
    return { factory, config: cfg };
  }
  const factory = registry.byExtensionName(category, name);
  if (!factory)
    throw holder.error(
      nameKey,
      `${CATEGORY_WORDS[category]} '${name}' is not supported by Herald (or needs a typed_config)`,
    );
  return { factory, config: holder.ctxEmpty(`${holder.pathOf(configKey)}`) };
}

export function makeFactoryContext(server: FactoryContext['server'], path: string): FactoryContext {
  const ctx: FactoryContext = {
    path,
    server,
    compileExtension<T>(
      category: ExtensionCategory,
      holder: Reader,
      nameKey?: string,
      configKey?: string,
    ): T {
      const { factory, config } = findExtension(category, holder, nameKey, configKey);
      return factory.create(config, makeFactoryContext(server, config.path)) as T;
    },
  };
  return ctx;
}
