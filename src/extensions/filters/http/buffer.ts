// envoy.filters.http.buffer: the whole request body is received before the
// request goes on (upstreams that cannot take a streamed body); past
// max_request_bytes the request fails with 413, as Envoy answers it. A request
// that had no content-length gets one once its size is known.
import type { Headers } from '../../../common/substitution-formatter.js';
import { BodySource } from '../../../http/codec.js';
import {
  type DecoderFilterCallbacks,
  FilterHeadersStatus,
  type HttpFilter,
  type HttpFilterFactory,
} from '../../../http/filter.js';
import type { ExtensionFactory } from '../../registry.js';

export const BUFFER_TYPE_URL = 'type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer';

class BufferFilter implements HttpFilter {
  private cb!: DecoderFilterCallbacks;

  constructor(private readonly maxBytes: number) {}

  setDecoderFilterCallbacks(cb: DecoderFilterCallbacks): void {
    this.cb = cb;
  }

  decodeHeaders(headers: Headers, endStream: boolean): FilterHeadersStatus {
    if (endStream || this.cb.upgradeType !== undefined) return FilterHeadersStatus.Continue;
    const cb = this.cb;
    const chunks: Buffer[] = [];
    let total = 0;
    let failed = false;
    cb.requestBody.consume(
      (chunk) => {
        if (failed) return;
        total += chunk.length;
        if (total > this.maxBytes) {
          failed = true;
          chunks.length = 0;
          cb.hcmStats.downstream_rq_too_large.inc();
          cb.sendLocalReply(413, 'Payload Too Large', { details: 'request_payload_too_large' });
          return;
        }
        // Copied: the codec may reuse the memory of a chunk once it has been handed over.
        chunks.push(Buffer.from(chunk));
      },
      (trailers) => {
        if (failed) return;
        if (headers['content-length'] === undefined) {
          headers['content-length'] = String(total);
          delete headers['transfer-encoding'];
        }
        // The rest of the chain (the router) reads the buffered body as if it were arriving.
        const replay = new BodySource(
          () => {},
          () => {},
          Number.POSITIVE_INFINITY,
        );
        for (const c of chunks) replay.push(c);
        replay.end(trailers);
        cb.replaceRequestBody(replay);
        cb.continueDecoding();
      },
    );
    return FilterHeadersStatus.StopIteration;
  }
}

export const bufferFactory: ExtensionFactory<HttpFilterFactory> = {
  name: 'envoy.filters.http.buffer',
  typeUrls: [BUFFER_TYPE_URL],
  category: 'http_filter',
  create(r) {
    if (!r.has('max_request_bytes')) throw r.error('max_request_bytes', 'is required');
    const max = r.num('max_request_bytes', 0);
    if (max <= 0) throw r.error('max_request_bytes', 'must be greater than 0');
    return {
      name: 'envoy.filters.http.buffer',
      terminal: false,
      createFilter: () => new BufferFilter(max),
    };
  },
};
