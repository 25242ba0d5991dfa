// Responses Herald makes itself (no route, no healthy upstream, ...), in
// Envoy's shape: text/plain with the reason, or for gRPC requests a
// trailers-only response carrying grpc-status and grpc-message.
import type { Headers } from '../common/substitution-formatter.js';
import type { LocalReplyOptions } from './filter.js';

/** Envoy's HTTP -> gRPC status mapping (Grpc::Utility::httpToGrpcStatus). */
export function httpToGrpcStatus(status: number): number {
  switch (status) {
    case 400:
      return 13; // INTERNAL
    case 401:
      return 16; // UNAUTHENTICATED
    case 403:
      return 7; // PERMISSION_DENIED
    case 404:
      return 12; // UNIMPLEMENTED
    case 429:
    case 502:
    case 503:
    case 504:
      return 14; // UNAVAILABLE
    default:
      return 2; // UNKNOWN
  }
}

/** gRPC proper: application/grpc or application/grpc+<codec> (not gRPC-Web). */
export function isGrpcContentType(ct: unknown): boolean {
  return typeof ct === 'string' && (ct === 'application/grpc' || ct.startsWith('application/grpc+'));
}

export function isGrpcRequest(h: Headers): boolean {
  return isGrpcContentType(h['content-type']);
}

export function localReply(
  status: number,
  body: string,
  requestHeaders: Headers,
  opts: LocalReplyOptions,
): { status: number; headers: Headers; body: Buffer } {
  const headers: Headers = { ...(opts.headers ?? {}) };
  if (isGrpcRequest(requestHeaders)) {
    headers['content-type'] = 'application/grpc';
    headers['grpc-status'] = String(opts.grpcStatus ?? httpToGrpcStatus(status));
    if (body) headers['grpc-message'] = encodeURIComponent(body).replace(/%20/g, ' ');
    return { status: 200, headers, body: Buffer.alloc(0) };
  }
  const buf = Buffer.from(body, 'utf8');
  if (buf.length) headers['content-type'] = 'text/plain';
  headers['content-length'] = String(buf.length);
  return { status, headers, body: buf };
}
