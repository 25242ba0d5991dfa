// config.core.v3.ConfigSource: where a dynamic resource comes from. Herald
// takes resources over ADS, from a type's own discovery service
// (api_config_source), or from a file (path_config_source).
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
  if (kind === 'api_config_source') {
    const a = r.msg('api_config_source')!;
    const { apiType, cluster } = compileGrpcApi(a);
    return { kind: 'api', apiType, cluster, initialFetchTimeoutMs };
  }
  throw r.error(
    kind,
    kind
      ? `config source '${kind}' is not supported yet (use ads or path_config_source)`
      : 'a config source is required',
  );
}

/** An ApiConfigSource over gRPC (ads_config, api_config_source): the API type and its static cluster. */
export function compileGrpcApi(a: Reader): { apiType: 'GRPC' | 'DELTA_GRPC'; cluster: string } {
  const apiType = a.enum<string>('api_type', 'GRPC');
  if (apiType !== 'GRPC' && apiType !== 'DELTA_GRPC')
    throw a.error('api_type', `api_type ${apiType} is not supported (GRPC or DELTA_GRPC)`);
  const v = a.enum<string>('transport_api_version', 'AUTO');
  if (v !== 'AUTO' && v !== 'V3') throw a.error('transport_api_version', 'only V3 is supported');
  // Herald sends the node on every stream's first request; sending it only once is an optimisation.
  a.bool('set_node_on_first_message_only');
  const services = a.list('grpc_services');
  if (services.length !== 1) throw a.error('grpc_services', 'exactly one gRPC service is supported');
  const g = services[0]!;
  const eg = g.msg('envoy_grpc');
  if (!eg) throw g.error('envoy_grpc', 'only envoy_grpc (a static cluster) is supported');
  g.durationMs('timeout');
  return { apiType: apiType as 'GRPC' | 'DELTA_GRPC', cluster: eg.str('cluster_name', '') };
}
