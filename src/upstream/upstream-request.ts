// The router's view of one upstream request, whatever the protocol.
import type { Headers } from '../common/substitution-formatter.js';

/** Why an upstream request failed, in Envoy's words (%UPSTREAM_TRANSPORT_FAILURE_REASON% and reset reasons). */
export type ResetReason =
  | 'connection_failure'
  | 'connection_termination'
  | 'remote_reset'
  | 'local_reset'
  | 'overflow'
  | 'protocol_error'
  | 'refused_stream';

export interface UpstreamCallbacks {
  onHeaders(status: number, headers: Headers, endStream: boolean): void;
  onData(chunk: Buffer, endStream: boolean): void;
  onTrailers(trailers: Headers): void;
  /** The request failed. `afterConnect` is false when no connection was ever made. */
  onReset(reason: ResetReason, detail: string): void;
}

/** The upstream connection a request went on (%UPSTREAM_LOCAL_ADDRESS%, %UPSTREAM_CONNECTION_ID%). */
export interface UpstreamConnectionInfo {
  localAddress: string;
  localPort: number;
  connectionId: number;
}

export interface UpstreamRequest {
  /** Request bytes reached an upstream connection (false while waiting for one). */
  readonly started: boolean;
  /** The connection, once there is one. */
  connectionInfo?(): UpstreamConnectionInfo | undefined;
  /** Sends body bytes; returns false when the upstream is not keeping up (wait for onDrain). */
  sendData(chunk: Buffer, endStream: boolean): boolean;
  sendTrailers(trailers: Headers): void;
  onDrain(cb: () => void): void;
  /** Cancels the request; the connection is closed (HTTP/1) or the stream reset (HTTP/2). */
  abort(): void;
  /** Pauses delivery of response data (downstream backpressure). */
  pauseResponse(): void;
  resumeResponse(): void;
}

export interface NewStreamOptions {
  /** The request has no body: headers end the stream. */
  endStream: boolean;
  /** An upgrade (WebSocket): the body is raw tunnel bytes, a 101 turns the connection into a tunnel. */
  upgrade?: boolean;
  connectTimeoutMs: number;
}
