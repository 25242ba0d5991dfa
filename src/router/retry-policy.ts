// Retries as Envoy's router does them: route or virtual-host retry_policy,
// merged with the x-envoy-retry-* request headers; decisions on response
// headers and on resets; fully jittered exponential back-off; the cluster's
// retry circuit breaker (max_retries or retry_budget).

import type { Headers } from '../common/substitution-formatter.js';
import type { Reader } from '../config/reader.js';
import type { Cluster } from '../upstream/cluster.js';
import type { ResourceManager } from '../upstream/resource-manager.js';
import type { ResetReason } from '../upstream/upstream-request.js';
import { compileHeaderMatcher } from './route-config.js';

export const RetryOn = {
  '5xx': 1 << 0,
  'gateway-error': 1 << 1,
  'connect-failure': 1 << 2,
  'retriable-4xx': 1 << 3,
  'refused-stream': 1 << 4,
  'retriable-status-codes': 1 << 5,
  'retriable-headers': 1 << 6,
  reset: 1 << 7,
  'reset-before-request': 1 << 8,
  'envoy-ratelimited': 1 << 9,
  'http3-post-connect-failure': 1 << 10,
  cancelled: 1 << 11,
  'deadline-exceeded': 1 << 12,
  internal: 1 << 13,
  'resource-exhausted': 1 << 14,
  unavailable: 1 << 15,
} as const;

const GRPC_BITS: Record<string, number> = {
  '1': RetryOn.cancelled,
  '4': RetryOn['deadline-exceeded'],
  '13': RetryOn.internal,
  '8': RetryOn['resource-exhausted'],
  '14': RetryOn.unavailable,
};
const GRPC_MASK =
  RetryOn.cancelled |
  RetryOn['deadline-exceeded'] |
  RetryOn.internal |
  RetryOn['resource-exhausted'] |
  RetryOn.unavailable;
const HTTP_NAMES = [
  '5xx',
  'gateway-error',
  'connect-failure',
  'retriable-4xx',
  'refused-stream',
  'retriable-status-codes',
  'retriable-headers',
  'reset',
  'reset-before-request',
  'envoy-ratelimited',
  'http3-post-connect-failure',
];
const GRPC_NAMES = ['cancelled', 'deadline-exceeded', 'internal', 'resource-exhausted', 'unavailable'];

/** Parses a retry_on list; `names` limits which conditions are valid. Unknown ones are returned. */
function parseRetryOn(value: string, names: readonly string[]): { bits: number; unknown: string[] } {
  let bits = 0;
  const unknown: string[] = [];
  for (const raw of value.split(',')) {
    const v = raw.trim();
    if (!v) continue;
    if (names.includes(v)) bits |= RetryOn[v as keyof typeof RetryOn];
    else unknown.push(v);
  }
  return { bits, unknown };
}

/**
 * The router's strict_check_headers: whether a control header's value is well formed
 * (Envoy answers 400 with flag IH when it is not).
 */
export function validControlHeader(name: string, value: string): boolean {
  switch (name) {
    case 'x-envoy-upstream-rq-timeout-ms':
    case 'x-envoy-upstream-rq-per-try-timeout-ms':
    case 'x-envoy-max-retries':
      return /^\d+$/.test(value);
    case 'x-envoy-retry-on':
      return parseRetryOn(value, HTTP_NAMES).unknown.length === 0;
    case 'x-envoy-retry-grpc-on':
      return parseRetryOn(value, GRPC_NAMES).unknown.length === 0;
    default:
      return true;
  }
}

export const STRICT_CHECKABLE_HEADERS = [
  'x-envoy-upstream-rq-timeout-ms',
  'x-envoy-upstream-rq-per-try-timeout-ms',
  'x-envoy-max-retries',
  'x-envoy-retry-on',
  'x-envoy-retry-grpc-on',
];

export interface RetryPolicy {
  retryOn: number;
  numRetries: number;
  /** 0 = none. */
  perTryTimeoutMs: number;
  perTryIdleTimeoutMs: number;
  baseIntervalMs: number;
  maxIntervalMs: number;
  retriableStatusCodes: number[];
  retriableHeaders: Array<(h: Headers) => boolean>;
  /** retriable_request_headers: only requests matching one of these are retried. */
  retriableRequestHeaders: Array<(h: Headers) => boolean>;
  /** retry_host_predicate previous_hosts: a retry avoids hosts already tried. */
  previousHosts: boolean;
  hostSelectionMaxAttempts: number;
}

const PREVIOUS_HOSTS =
  'type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate';

/** config.route.v3.RetryPolicy. */
export function compileRetryPolicy(r: Reader): RetryPolicy {
  // retry_on may list HTTP and gRPC conditions together.
  const { bits, unknown } = parseRetryOn(r.str('retry_on', ''), [...HTTP_NAMES, ...GRPC_NAMES]);
  if (unknown.length) throw r.error('retry_on', `unknown retry condition '${unknown[0]}'`);
  const p: RetryPolicy = {
    retryOn: bits,
    numRetries: r.num('num_retries', 1),
    perTryTimeoutMs: r.durationMs('per_try_timeout', 0),
    perTryIdleTimeoutMs: r.durationMs('per_try_idle_timeout', 0),
    baseIntervalMs: 25,
    maxIntervalMs: 250,
    retriableStatusCodes: [],
    retriableHeaders: r.list('retriable_headers').map(compileHeaderMatcher),
    retriableRequestHeaders: r.list('retriable_request_headers').map(compileHeaderMatcher),
    previousHosts: false,
    hostSelectionMaxAttempts: r.num('host_selection_retry_max_attempts', 1),
  };
  const codes = r.raw('retriable_status_codes');
  if (Array.isArray(codes)) p.retriableStatusCodes = codes.map(Number);
  const bo = r.msg('retry_back_off');
  if (bo) {
    p.baseIntervalMs = bo.durationMs('base_interval', 25);
    p.maxIntervalMs = bo.durationMs('max_interval', p.baseIntervalMs * 10);
    if (p.maxIntervalMs < p.baseIntervalMs)
      throw bo.error('max_interval', 'max_interval must be greater than or equal to the base_interval');
  }
  for (const pred of r.list('retry_host_predicate')) {
    const tc = pred.msg('typed_config');
    pred.str('name');
    if (tc?.typeUrl !== PREVIOUS_HOSTS)
      throw pred.error('typed_config', `retry host predicate ${tc?.typeUrl ?? ''} is not supported`);
    p.previousHosts = true;
  }
  return p;
}

export type RetryStatus = 'yes' | 'no' | 'limit_exceeded' | 'overflow';

/** One request's retry state: the policy merged with the request's x-envoy-retry-* headers. */
/** The x-envoy-* request headers that steer retries: read, then never sent upstream. */
const RETRY_REQUEST_HEADERS = [
  'x-envoy-retry-on',
  'x-envoy-retry-grpc-on',
  'x-envoy-max-retries',
  'x-envoy-retriable-status-codes',
  'x-envoy-retriable-header-names',
] as const;

export class RetryState {
  private retryOn: number;
  private remaining: number;
  private readonly statusCodes: number[];
  /** A retry was scheduled and its attempt has not reported yet (holds a retry slot). */
  private armed = false;
  private attempt = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly headerNames: string[] = [];

  private constructor(
    private readonly policy: RetryPolicy | undefined,
    private readonly cluster: Cluster,
    private readonly resources: ResourceManager,
    h: Headers,
  ) {
    this.retryOn = policy?.retryOn ?? 0;
    this.remaining = policy?.numRetries ?? 1;
    this.statusCodes = policy ? [...policy.retriableStatusCodes] : [];
    const on = h['x-envoy-retry-on'];
    if (typeof on === 'string') this.retryOn |= parseRetryOn(on, HTTP_NAMES).bits;
    const grpcOn = h['x-envoy-retry-grpc-on'];
    if (typeof grpcOn === 'string') this.retryOn |= parseRetryOn(grpcOn, GRPC_NAMES).bits;
    const max = h['x-envoy-max-retries'];
    if (this.retryOn !== 0 && typeof max === 'string' && /^\d+$/.test(max)) this.remaining = Number(max);
    const codes = h['x-envoy-retriable-status-codes'];
    if (typeof codes === 'string')
      for (const c of codes.split(',')) if (/^\s*\d+\s*$/.test(c)) this.statusCodes.push(Number(c));
    const names = h['x-envoy-retriable-header-names'];
    if (typeof names === 'string')
      for (const n of names.split(',')) if (n.trim()) this.headerNames.push(n.trim().toLowerCase());
  }

  /**
   * The retry state for a request, or undefined when nothing could ever be retried (no policy,
   * no x-envoy-retry-on header). The x-envoy-retry-* headers are consumed either way.
   */
  static create(
    policy: RetryPolicy | undefined,
    cluster: Cluster,
    resources: ResourceManager,
    h: Headers,
  ): RetryState | undefined {
    let state: RetryState | undefined;
    if (
      (policy && policy.retryOn !== 0) ||
      h['x-envoy-retry-on'] !== undefined ||
      h['x-envoy-retry-grpc-on'] !== undefined
    ) {
      if (
        !policy ||
        policy.retriableRequestHeaders.length === 0 ||
        policy.retriableRequestHeaders.some((m) => m(h))
      )
        state = new RetryState(policy, cluster, resources, h);
      if (state && state.retryOn === 0) state = undefined;
    }
    // Guarded: `delete` of an absent key is still a runtime call, and most requests carry none.
    for (const k of RETRY_REQUEST_HEADERS) if (h[k] !== undefined) delete h[k];
    return state;
  }

  get perTryTimeoutMs(): number {
    return this.policy?.perTryTimeoutMs ?? 0;
  }

  get perTryIdleTimeoutMs(): number {
    return this.policy?.perTryIdleTimeoutMs ?? 0;
  }

  get previousHosts(): boolean {
    return this.policy?.previousHosts ?? false;
  }

  get hostSelectionMaxAttempts(): number {
    return this.policy?.hostSelectionMaxAttempts ?? 1;
  }

  wouldRetryFromHeaders(status: number, h: Headers): boolean {
    const on = this.retryOn;
    // A rate-limited answer from an upstream Envoy is retried only under envoy-ratelimited.
    if (h['x-envoy-ratelimited'] !== undefined) return (on & RetryOn['envoy-ratelimited']) !== 0;
    if (on & RetryOn['5xx'] && status >= 500 && status < 600) return true;
    if (on & RetryOn['gateway-error'] && status >= 502 && status <= 504) return true;
    if (on & RetryOn['retriable-4xx'] && status === 409) return true;
    if (on & RetryOn['retriable-status-codes'] && this.statusCodes.includes(status)) return true;
    if (on & RetryOn['retriable-headers']) {
      if (this.policy?.retriableHeaders.some((m) => m(h))) return true;
      if (this.headerNames.some((n) => h[n] !== undefined)) return true;
    }
    if (on & GRPC_MASK) {
      const gs = h['grpc-status'];
      const bit = typeof gs === 'string' ? GRPC_BITS[gs] : undefined;
      if (bit !== undefined && on & bit) return true;
    }
    return false;
  }

  /** `started`: request bytes had reached the upstream connection (reset-before-request). */
  wouldRetryFromReset(reason: ResetReason | 'timeout', started: boolean): boolean {
    if (reason === 'overflow') return false;
    const on = this.retryOn;
    if (reason === 'connection_failure' && on & RetryOn['connect-failure']) return true;
    if (on & RetryOn['reset-before-request'] && !started) return true;
    if (on & RetryOn.reset) return true;
    if (on & (RetryOn['5xx'] | RetryOn['gateway-error'])) return true;
    if (on & RetryOn['refused-stream'] && reason === 'refused_stream') return true;
    return false;
  }

  /**
   * Envoy's shouldRetry: counts a success when a scheduled retry's attempt did not need
   * another, enforces num_retries and the retry circuit breaker, and schedules `doRetry`
   * after a jittered back-off.
   */
  shouldRetry(wouldRetry: boolean, doRetry: () => void): RetryStatus {
    const stats = this.cluster.stats;
    if (this.armed && !wouldRetry) stats.upstream_rq_retry_success.inc();
    this.release();
    if (!wouldRetry) return 'no';
    if (this.remaining === 0) {
      stats.upstream_rq_retry_limit_exceeded.inc();
      return 'limit_exceeded';
    }
    this.remaining--;
    if (!this.resources.retries.canCreate()) {
      stats.upstream_rq_retry_overflow.inc();
      return 'overflow';
    }
    this.armed = true;
    this.resources.retries.inc();
    stats.upstream_rq_retry.inc();
    stats.upstream_rq_retry_backoff_exponential.inc();
    this.timer = setTimeout(doRetry, this.nextBackOffMs());
    return 'yes';
  }

  /** Fully jittered exponential back-off: uniform in [0, min((2^n - 1) * base, max)] for retry n. */
  private nextBackOffMs(): number {
    const base = this.policy?.baseIntervalMs ?? 25;
    const max = this.policy?.maxIntervalMs ?? base * 10;
    const ceiling = Math.min(base * (2 ** ++this.attempt - 1), max);
    return Math.floor(Math.random() * ceiling);
  }

  /** Gives back the retry slot (the retried attempt reported, or the request ended). */
  release(): void {
    if (this.armed) {
      this.armed = false;
      this.resources.retries.dec();
    }
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
