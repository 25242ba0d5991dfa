// config.core.v3.HealthCheck -> HealthCheckConfig (plain data, safe to hand to workers).
import type { Reader } from '../../config/reader.js';
import { compileHeaderMutations, type HeaderMutations } from '../../http/header-mutation.js';

export interface HttpCheckConfig {
  kind: 'http';
  /** Host header; empty: the endpoint's hostname, else the cluster name (Envoy's getHostname). */
  host: string;
  path: string;
  method: string;
  /** [start, end) ranges; Envoy's default is 200 only. */
  expectedStatuses: Array<[number, number]>;
  /** Statuses that count towards unhealthy_threshold instead of failing the host at once. */
  retriableStatuses: Array<[number, number]>;
  headers: HeaderMutations;
  codec: 'HTTP1' | 'HTTP2';
  send: Buffer | undefined;
  receive: Buffer[];
  /** How much of the response body is matched against `receive` (response_buffer_size, default 1024). */
  responseBufferSize: number;
}

export interface TcpCheckConfig {
  kind: 'tcp';
  /** Empty: connect-only. */
  send: Buffer;
  receive: Buffer[];
}

export interface GrpcCheckConfig {
  kind: 'grpc';
  serviceName: string;
  authority: string;
}

export interface HealthCheckConfig {
  timeoutMs: number;
  intervalMs: number;
  initialJitterMs: number;
  intervalJitterMs: number;
  intervalJitterPercent: number;
  unhealthyThreshold: number;
  healthyThreshold: number;
  reuseConnection: boolean;
  noTrafficIntervalMs: number;
  noTrafficHealthyIntervalMs: number;
  unhealthyIntervalMs: number;
  unhealthyEdgeIntervalMs: number;
  healthyEdgeIntervalMs: number;
  alwaysLogHealthCheckFailures: boolean;
  alwaysLogHealthCheckSuccess: boolean;
  checker: HttpCheckConfig | TcpCheckConfig | GrpcCheckConfig;
}

const DEFAULT_RESPONSE_BUFFER_SIZE = 1024;

export function compileHealthCheck(r: Reader): HealthCheckConfig {
  const intervalMs = r.durationMs('interval', 0);
  const noTrafficIntervalMs = r.durationMs('no_traffic_interval', 60_000);
  const unhealthyIntervalMs = r.durationMs('unhealthy_interval', intervalMs);
  const cfg: Omit<HealthCheckConfig, 'checker'> = {
    timeoutMs: r.durationMs('timeout', 0),
    intervalMs,
    initialJitterMs: r.durationMs('initial_jitter', 0),
    intervalJitterMs: r.durationMs('interval_jitter', 0),
    intervalJitterPercent: r.num('interval_jitter_percent', 0),
    unhealthyThreshold: r.num('unhealthy_threshold', 0),
    healthyThreshold: r.num('healthy_threshold', 0),
    reuseConnection: r.bool('reuse_connection', true),
    noTrafficIntervalMs,
    noTrafficHealthyIntervalMs: r.durationMs('no_traffic_healthy_interval', noTrafficIntervalMs),
    unhealthyIntervalMs,
    unhealthyEdgeIntervalMs: r.durationMs('unhealthy_edge_interval', unhealthyIntervalMs),
    healthyEdgeIntervalMs: r.durationMs('healthy_edge_interval', intervalMs),
    alwaysLogHealthCheckFailures: r.bool('always_log_health_check_failures'),
    alwaysLogHealthCheckSuccess: r.bool('always_log_health_check_success'),
  };
  const http = r.msg('http_health_check');
  if (http) return { ...cfg, checker: compileHttp(http) };
  const tcp = r.msg('tcp_health_check');
  if (tcp) {
    if (tcp.has('proxy_protocol_config'))
      throw tcp.error('proxy_protocol_config', 'PROXY protocol health checks are not supported');
    const send = tcp.msg('send');
    return {
      ...cfg,
      checker: {
        kind: 'tcp',
        send: send ? payload(send) : Buffer.alloc(0),
        receive: tcp.list('receive').map(payload),
      },
    };
  }
  const grpc = r.msg('grpc_health_check');
  if (grpc) {
    if (grpc.has('initial_metadata'))
      throw grpc.error('initial_metadata', 'initial_metadata is not supported yet');
    return {
      ...cfg,
      checker: {
        kind: 'grpc',
        serviceName: grpc.str('service_name', ''),
        authority: grpc.str('authority', ''),
      },
    };
  }
  throw r.error('custom_health_check', 'custom health checkers are not supported');
}

function compileHttp(h: Reader): HttpCheckConfig {
  const method = h.enum<string>('method', 'METHOD_UNSPECIFIED');
  const send = h.msg('send');
  const m = method === 'METHOD_UNSPECIFIED' ? 'GET' : method;
  if (send && ['GET', 'HEAD', 'DELETE', 'TRACE'].includes(m))
    throw h.error('send', `a request payload cannot be sent with method '${m}'`);
  const codec = h.enum<string>('codec_client_type', 'HTTP1');
  if (codec === 'HTTP3') throw h.error('codec_client_type', 'HTTP/3 health checks are not supported');
  if (h.has('service_name_matcher'))
    throw h.error('service_name_matcher', 'service_name_matcher is not supported yet');
  const receive = h.list('receive').map(payload);
  const responseBufferSize = h.num('response_buffer_size', DEFAULT_RESPONSE_BUFFER_SIZE);
  const total = receive.reduce((a, b) => a + b.length, 0);
  if (responseBufferSize !== 0 && total > responseBufferSize)
    throw h.error(
      'receive',
      `the expected response length '${total}' is over the response buffer size '${responseBufferSize}'`,
    );
  return {
    kind: 'http',
    host: h.str('host', ''),
    path: h.str('path', ''),
    method: m,
    expectedStatuses: ranges(h, 'expected_statuses', 'expected'),
    retriableStatuses: ranges(h, 'retriable_statuses', 'retriable'),
    headers: compileHeaderMutations(h, 'request'),
    codec: codec as 'HTTP1' | 'HTTP2',
    send: send ? payload(send) : undefined,
    receive,
    responseBufferSize,
  };
}

function ranges(h: Reader, key: string, what: string): Array<[number, number]> {
  return h.list(key).map((r) => {
    const start = r.num('start', 0);
    const end = r.num('end', 0);
    if (start >= end)
      throw r.error(undefined, `invalid ${what} status range: start (${start}) must be below end (${end})`);
    if (start < 100) throw r.error('start', `invalid ${what} status range: start must be >= 100`);
    if (end > 600) throw r.error('end', `invalid ${what} status range: end must be <= 600`);
    return [start, end];
  });
}

/** HealthCheck.Payload: `text` is hex, `binary` is bytes (base64 in JSON). */
function payload(p: Reader): Buffer {
  const text = p.str('text');
  if (text !== undefined) {
    if (text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text))
      throw p.error('text', `'${text}' is not a hex string`);
    return Buffer.from(text, 'hex');
  }
  return Buffer.from(p.str('binary', ''), 'base64');
}
