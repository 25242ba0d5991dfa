// config.core.v3.ConfigSource: where a dynamic resource comes from. Herald
// takes resources over ADS or from a file (path_config_source).
import type { ConfigSourceConfig } from '../router/rds.js';
import type { Reader } from './reader.js';

export function compileConfigSource(r: Reader): ConfigSourceConfig {
  const initialFetchTimeoutMs = r.durationMs('initial_fetch_timeout', 15000);
  const v = r.enum<string>('resource_api_version', 'AUTO');
  if (v !== 'AUTO' && v !== 'V3') throw r.error('resource_api_version', 'only V3 is supported');
  const kind = r.oneof('ads', 'path', 'path_config_source', 'api_config_source', 'self');
  if (kind === 'ads') {
    r.msg('ads');
    return { kind: 'ads', initialFetchTimeoutMs };
  }
  if (kind === 'path') return { kind: 'path', path: r.str('path', ''), initialFetchTimeoutMs };
  if (kind === 'path_config_source') {
    const p = r.msg('path_config_source')!;
    const wd = p.msg('watched_directory');
    wd?.str('path');
    return { kind: 'path', path: p.str('path', ''), initialFetchTimeoutMs };
  }
  throw r.error(
    kind,
    kind
      ? `config source '${kind}' is not supported yet (use ads or path_config_source)`
      : 'a config source is required',
  );
}
