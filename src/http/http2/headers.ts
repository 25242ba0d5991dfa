// Header maps made acceptable to Node's HTTP/2: connection-specific headers
// removed (RFC 9113 8.2.2) and repeated values of the headers Node insists
// are single-valued joined with ", " (Envoy's nghttp2 would send them
// repeated; Node throws instead).
import type http2 from 'node:http2';
import type { Headers } from '../../common/substitution-formatter.js';

const CONNECTION_SPECIFIC = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'host',
]);

/** Node's list of headers that may appear only once (lib/internal/http2/util.js). */
const SINGLE_VALUE = new Set([
  'access-control-allow-credentials',
  'access-control-max-age',
  'access-control-request-method',
  'age',
  'authorization',
  'content-encoding',
  'content-language',
  'content-length',
  'content-location',
  'content-md5',
  'content-range',
  'content-type',
  'date',
  'dnt',
  'etag',
  'expires',
  'from',
  'host',
  'if-match',
  'if-modified-since',
  'if-none-match',
  'if-range',
  'if-unmodified-since',
  'last-modified',
  'location',
  'max-forwards',
  'proxy-authorization',
  'range',
  'referer',
  'retry-after',
  'tk',
  'upgrade-insecure-requests',
  'user-agent',
  'x-content-type-options',
]);

/** Copies `h` into `out`, skipping pseudo-headers (the caller sets those) and connection-specific ones. */
export function toHttp2Headers(h: Headers, out: http2.OutgoingHttpHeaders = {}): http2.OutgoingHttpHeaders {
  for (const k in h) {
    const v = h[k];
    if (v === undefined || k.charCodeAt(0) === 58 || CONNECTION_SPECIFIC.has(k)) continue;
    if (k === 'te' && v !== 'trailers') continue;
    if (Array.isArray(v) && SINGLE_VALUE.has(k)) {
      // Repeated content-length values were checked equal by the HTTP/1 parser: keep one.
      out[k] = k === 'content-length' ? v[0] : v.join(', ');
    } else out[k] = v;
  }
  return out;
}
