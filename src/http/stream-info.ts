// Per-request (or per-TCP-connection) facts that access logs, stats and
// local replies read: Envoy's StreamInfo.
import { monotonicNow } from '../common/clock.js';
import type { UpstreamConnectionInfo } from '../upstream/upstream-request.js';

/** Envoy's response flags, in Envoy's order (bit i = entry i). */
export const RESPONSE_FLAGS = [
  ['LH', 'FailedLocalHealthCheck'],
  ['UH', 'NoHealthyUpstream'],
  ['UT', 'UpstreamRequestTimeout'],
  ['LR', 'LocalReset'],
  ['UR', 'UpstreamRemoteReset'],
  ['UF', 'UpstreamConnectionFailure'],
  ['UC', 'UpstreamConnectionTermination'],
  ['UO', 'UpstreamOverflow'],
  ['NR', 'NoRouteFound'],
  ['DI', 'DelayInjected'],
  ['FI', 'FaultInjected'],
  ['RL', 'RateLimited'],
  ['UAEX', 'UnauthorizedExternalService'],
  ['RLSE', 'RateLimitServiceError'],
  ['DC', 'DownstreamConnectionTermination'],
  ['URX', 'UpstreamRetryLimitExceeded'],
  ['SI', 'StreamIdleTimeout'],
  ['IH', 'InvalidEnvoyRequestHeaders'],
  ['DPE', 'DownstreamProtocolError'],
  ['UMSDR', 'UpstreamMaxStreamDurationReached'],
  ['RFCF', 'ResponseFromCacheFilter'],
  ['NFCF', 'NoFilterConfigFound'],
  ['DT', 'DurationTimeout'],
  ['UPE', 'UpstreamProtocolError'],
  ['NC', 'NoClusterFound'],
  ['OM', 'OverloadManager'],
  ['DF', 'DnsResolutionFailed'],
  ['DO', 'DropOverLoad'],
] as const;

export type ResponseFlagName = (typeof RESPONSE_FLAGS)[number][0];

export const ResponseFlag = Object.fromEntries(RESPONSE_FLAGS.map(([s], i) => [s, 1 << i])) as Record<
  ResponseFlagName,
  number
>;

export function responseFlagsShort(bits: number): string {
  if (bits === 0) return '-';
  let out = '';
  for (let i = 0; i < RESPONSE_FLAGS.length; i++) {
    if (bits & (1 << i)) out = out ? `${out},${RESPONSE_FLAGS[i]![0]}` : RESPONSE_FLAGS[i]![0];
  }
  return out;
}

export function responseFlagsLong(bits: number): string {
  if (bits === 0) return '-';
  const out: string[] = [];
  for (let i = 0; i < RESPONSE_FLAGS.length; i++) if (bits & (1 << i)) out.push(RESPONSE_FLAGS[i]![1]);
  return out.join(',');
}

export class StreamInfo {
  /** Monotonic start (milliseconds, common/clock). */
  readonly startMono = monotonicNow();
  private wallStart = -1;
  /**
   * Wall-clock start (ms since the epoch), derived when first asked (an access log): now minus
   * the time elapsed, which saves a second clock read on every stream.
   */
  get startTime(): number {
    if (this.wallStart < 0) this.wallStart = Date.now() - (monotonicNow() - this.startMono);
    return this.wallStart;
  }
  set startTime(ms: number) {
    this.wallStart = ms;
  }
  /** Milliseconds from start, or -1 when it did not happen. */
  lastRequestByteMs = -1;
  firstResponseByteMs = -1;
  lastResponseByteMs = -1;

  /** Milliseconds since the stream started. */
  elapsedMs(): number {
    return monotonicNow() - this.startMono;
  }
  responseFlags = 0;
  responseCode = 0;
  responseCodeDetails = '';
  routeName = '';
  upstreamCluster = '';
  upstreamHost = '';
  /** %UPSTREAM_TRANSPORT_FAILURE_REASON%. */
  upstreamTransportFailureReason = '';
  /** %CONNECTION_ID% (-1 when none). */
  connectionId = -1;
  /**
   * The upstream connection, asked only when an access log wants %UPSTREAM_LOCAL_ADDRESS% or
   * %UPSTREAM_CONNECTION_ID% (nothing is computed per request otherwise).
   */
  upstreamConnection: { connectionInfo?(): UpstreamConnectionInfo | undefined } | undefined;
  /** %STREAM_ID%: the request id of an HTTP stream, else a number. */
  streamId = '';
  /** %REQUESTED_SERVER_NAME%: SNI. */
  requestedServerName = '';
  /** %CONNECTION_TERMINATION_DETAILS%. */
  connectionTerminationDetails = '';
  bytesReceived = 0;
  bytesSent = 0;
  attemptCount = 0;
  /** Marked by the health_check filter: the request is a health check (not_health_check_filter skips it). */
  healthCheck = false;

  setFlag(flag: number): void {
    this.responseFlags |= flag;
  }

  hasFlag(flag: number): boolean {
    return (this.responseFlags & flag) !== 0;
  }
}
