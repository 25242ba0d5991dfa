// Reads an Envoy v3 bootstrap (YAML or JSON, plus an optional --config-yaml
// overlay) into canonical, proto-validated JSON.
import fs from 'node:fs';
import YAML from 'yaml';
import { envoyProtos } from './envoy-protos.js';
import { ConfigError, ConfigErrors } from './errors.js';
import { mergeMessage } from './merge.js';
import { type JsonObject, walkMessage } from './proto-json.js';

export const BOOTSTRAP_TYPE = 'envoy.config.bootstrap.v3.Bootstrap';

export function parseConfigText(text: string, source: string): unknown {
  const doc = YAML.parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length) {
    const e = doc.errors[0]!;
    const pos = e.linePos?.[0];
    const where = pos ? `${source}:${pos.line}:${pos.col}` : source;
    throw new ConfigErrors([new ConfigError('', `${where}: invalid YAML/JSON: ${e.message.split('\n')[0]}`)]);
  }
  return doc.toJS({ maxAliasCount: 1000 }) ?? {};
}

export interface BootstrapSource {
  /** -c FILE */
  path?: string | undefined;
  /** --config-yaml STRING, merged over the file */
  configYaml?: string | undefined;
}

/** Loads and validates a bootstrap; throws ConfigErrors listing every problem found. */
export function loadBootstrap(src: BootstrapSource): JsonObject {
  const protos = envoyProtos();
  const type = protos.lookupType(BOOTSTRAP_TYPE)!;
  const parts: JsonObject[] = [];
  const sources: Array<[unknown, string]> = [];
  if (src.path !== undefined) {
    let text: string;
    try {
      text = fs.readFileSync(src.path, 'utf8');
    } catch (e) {
      throw new ConfigErrors([new ConfigError('', `cannot read ${src.path}: ${(e as Error).message}`)]);
    }
    if (/\.(pb|pb_text)$/.test(src.path))
      throw new ConfigErrors([
        new ConfigError(
          '',
          `${src.path}: binary and text-proto bootstraps are not supported; use YAML or JSON`,
        ),
      ]);
    sources.push([parseConfigText(text, src.path), src.path]);
  }
  if (src.configYaml !== undefined)
    sources.push([parseConfigText(src.configYaml, '--config-yaml'), '--config-yaml']);
  if (sources.length === 0)
    throw new ConfigErrors([new ConfigError('', 'no configuration given (-c FILE or --config-yaml)')]);

  for (const [value, source] of sources) {
    if (value && typeof value === 'object' && 'resources' in value && !('static_resources' in value))
      throw new ConfigErrors([
        new ConfigError(
          'resources',
          `${source} is an xDS DiscoveryResponse file, not a bootstrap; point a bootstrap's dynamic_resources at it with path_config_source`,
        ),
      ]);
    const { value: canonical, errors } = walkMessage(protos, BOOTSTRAP_TYPE, value, { checkRequired: false });
    if (errors.length)
      throw new ConfigErrors(
        sources.length > 1
          ? errors.map((e) => new ConfigError(e.path, `${e.detail} (in ${source})`))
          : errors,
      );
    parts.push(canonical ?? {});
  }
  const merged = parts.reduce((acc, p) => mergeMessage(protos, type, acc, p));
  // Second pass over the merged whole: required fields are checked only now.
  const { value, errors } = walkMessage(protos, BOOTSTRAP_TYPE, merged, { checkRequired: true });
  if (errors.length) throw new ConfigErrors(errors);
  return value ?? {};
}
