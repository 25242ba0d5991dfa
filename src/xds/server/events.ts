// What a management server observes on its streams, recorded so tests and
// operators can see ACKs and NACKs exactly as clients sent them.
import type { JsonObject } from '../../config/proto-json.js';
import type { RpcStatus, StreamKind } from '../protocol.js';

export interface StreamInfo {
  /** Increasing id of the stream within this server. */
  streamId: number;
  kind: StreamKind;
  /** Full gRPC method path the stream was opened on. */
  method: string;
  nodeId: string;
}

export interface RequestEvent extends StreamInfo {
  typeUrl: string;
  /** The request as received (SotW or delta). */
  request: Readonly<Record<string, unknown>>;
  node: JsonObject | undefined;
}

export interface AckEvent extends StreamInfo {
  typeUrl: string;
  nonce: string;
  /** SotW: the version the client now runs. Delta: empty (delta ACKs carry no version). */
  versionInfo: string;
}

export interface NackEvent extends AckEvent {
  errorDetail: RpcStatus;
  /** The version (SotW) or system_version_info (delta) of the response that was rejected. */
  rejectedVersion: string;
}

export interface ResponseEvent extends StreamInfo {
  typeUrl: string;
  nonce: string;
  /** SotW version_info or delta system_version_info. */
  versionInfo: string;
  resourceNames: string[];
  /** Delta only. */
  removed: string[];
}

export interface XdsServerEvents {
  stream: [StreamInfo];
  streamClosed: [StreamInfo];
  request: [RequestEvent];
  ack: [AckEvent];
  nack: [NackEvent];
  response: [ResponseEvent];
  /** A request whose nonce is not the latest one sent for its type: ignored, as the spec says. */
  staleRequest: [RequestEvent];
}
