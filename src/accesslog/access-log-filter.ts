// config.accesslog.v3.AccessLogFilter: which requests get an access-log entry.
import type { FormatContext } from '../common/substitution-formatter.js';
import type { Reader } from '../config/reader.js';
import { httpToGrpcStatus } from '../http/local-reply.js';
import { RESPONSE_FLAGS } from '../http/stream-info.js';
import { compileHeaderMatcher } from '../router/route-config.js';

export type AccessLogFilter = (c: FormatContext) => boolean;

function comparison(r: Reader): (v: number) => boolean {
  const op = r.enum<string>('op', 'EQ');
  const value = r.msg('value')!;
  // The runtime key would override the default; Herald's runtime has no overrides yet.
  value.ignore('runtime_key');
  const want = value.num('default_value', 0);
  if (op === 'GE') return (v) => v >= want;
  if (op === 'LE') return (v) => v <= want;
  return (v) => v === want;
}

const GRPC_STATUS = [
  'OK',
  'CANCELED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
];

export function compileAccessLogFilter(r: Reader): AccessLogFilter {
  const kind = r.oneof(
    'status_code_filter',
    'duration_filter',
    'not_health_check_filter',
    'traceable_filter',
    'runtime_filter',
    'and_filter',
    'or_filter',
    'header_filter',
    'response_flag_filter',
    'grpc_status_filter',
    'extension_filter',
    'metadata_filter',
    'log_type_filter',
  );
  switch (kind) {
    case 'status_code_filter': {
      const cmp = comparison(r.msg(kind)!.msg('comparison')!);
      return (c) => cmp(c.info.responseCode);
    }
    case 'duration_filter': {
      const cmp = comparison(r.msg(kind)!.msg('comparison')!);
      return (c) => cmp(Math.floor(c.info.lastResponseByteMs));
    }
    case 'not_health_check_filter':
      r.msg(kind);
      // Health checks are the requests the health_check HTTP filter marked as such.
      return (c) => !c.info.healthCheck;
    case 'traceable_filter':
      r.msg(kind);
      // Herald does not trace, so no request is traceable.
      return () => false;
    case 'runtime_filter': {
      const f = r.msg(kind)!;
      f.str('runtime_key');
      f.ignore('use_independent_randomness'); // sampling is independent either way
      const p = f.msg('percent_sampled');
      const num = p?.num('numerator', 0) ?? 0;
      const den = { HUNDRED: 100, TEN_THOUSAND: 10000, MILLION: 1000000 }[
        p?.enum('denominator', 'HUNDRED') ?? 'HUNDRED'
      ];
      return () => Math.floor(Math.random() * den) < num;
    }
    case 'and_filter':
    case 'or_filter': {
      const parts = r.msg(kind)!.list('filters').map(compileAccessLogFilter);
      return kind === 'and_filter' ? (c) => parts.every((p) => p(c)) : (c) => parts.some((p) => p(c));
    }
    case 'header_filter': {
      const m = compileHeaderMatcher(r.msg(kind)!.msg('header')!);
      return (c) => m(c.requestHeaders ?? {});
    }
    case 'response_flag_filter': {
      const names = r.msg(kind)!.strList('flags');
      let mask = 0;
      for (const n of names) {
        const i = RESPONSE_FLAGS.findIndex(([s]) => s === n);
        if (i >= 0) mask |= 1 << i;
      }
      // No flags listed: any flag at all.
      return names.length === 0
        ? (c) => c.info.responseFlags !== 0
        : (c) => (c.info.responseFlags & mask) !== 0;
    }
    case 'grpc_status_filter': {
      const g = r.msg(kind)!;
      const statuses = new Set(
        ((g.raw('statuses') as string[] | undefined) ?? []).map((s) =>
          typeof s === 'number' ? s : GRPC_STATUS.indexOf(s),
        ),
      );
      const exclude = g.bool('exclude');
      return (c) => {
        const raw = c.responseTrailers?.['grpc-status'] ?? c.responseHeaders?.['grpc-status'];
        const status =
          raw !== undefined ? Number(raw) : c.info.responseCode ? httpToGrpcStatus(c.info.responseCode) : 2;
        return statuses.has(status) !== exclude;
      };
    }
    default:
      throw r.error(
        kind,
        kind ? `access log filter '${kind}' is not supported yet` : 'an access log filter is required',
      );
  }
}
