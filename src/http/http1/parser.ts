// An incremental HTTP/1.1 message parser for requests and responses, working
// in place on the socket's Buffers: header blocks are sliced once into a
// latin1 string, bodies are handed on as subarrays (no copies).
//
// Herald has its own parser rather than Node's http module because the proxy
// path needs control Node does not expose (no automatic Connection/Keep-Alive
// headers, Envoy's status codes for malformed input, never reusing a
// connection whose FIN was read) and because the module's per-request
// objects cost ~2x in throughput (see BENCHMARKS.md).
import type { Headers } from '../../common/substitution-formatter.js';
import { own } from '../../network/direct-read.js';

export interface ParserLimits {
  /** Bytes of request line + headers; more is 431. */
  maxHeaderBytes: number;
  /** Number of header lines; more is 431. */
  maxHeaderCount: number;
}

export interface MessageHead {
  /** Requests: method and target. */
  method: string;
  path: string;
  /** Responses: status code and reason. */
  status: number;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  minor: number;
  headers: Headers;
  /** True when the message says the connection should close after it. */
  close: boolean;
  upgrade: boolean;
  chunked: boolean;
  /** -1 when unknown (chunked, or a response read until close). */
  contentLength: number;
}

export interface ParserCallbacks {
  onHead(head: MessageHead): void;
  onBody(chunk: Buffer): void;
  onComplete(trailers: Headers | undefined): void;
}

export class ParseError extends Error {
  constructor(
    /** HTTP status Envoy answers with (400, 413, 431, 501). */
    readonly status: number,
    /** Envoy-style details, e.g. `http1.codec_error`. */
    readonly details: string,
    message: string,
  ) {
    super(message);
  }
}

enum State {
  Head = 0,
  Body = 1, // content-length
  ChunkSize = 2,
  ChunkData = 3,
  ChunkDataEnd = 4,
  Trailers = 5,
  UntilClose = 6,
  Done = 7, // message complete, waiting for reset()
}

const CRLF = 0x0a0d; // "\r\n" read as little-endian uint16
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** TOKEN's characters as a table (1 = allowed), for names checked in a loop. */
const TOKEN_CHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
  TOKEN_CHAR[c.charCodeAt(0)] = 1;
/** Hex digit values by byte (-1: not a hex digit), for chunk sizes. */
const HEX = new Int8Array(256).fill(-1);
for (let i = 0; i < 16; i++) {
  HEX['0123456789abcdef'.charCodeAt(i)] = i;
  HEX['0123456789ABCDEF'.charCodeAt(i)] = i;
}
/** Chunk sizes stay exact integers; a larger one is an overflow (400). */
const MAX_CHUNK_SIZE = Number.MAX_SAFE_INTEGER;
/** Bytes of a chunk-size line (size and extensions, without the CRLF) before it is refused. */
const MAX_CHUNK_LINE = 1024;

// Common header names, found by a hash of their lowercased characters computed while the name is
// validated: a hit costs one comparison loop and yields an already-interned key, where slicing,
// lowercasing and interning a fresh string per header showed up in profiles.
const KNOWN_NAMES = new Array<string | undefined>(1024);
function nameHash(name: string): number {
  let hash = 0;
  for (let i = 0; i < name.length; i++) hash = (Math.imul(hash, 31) + name.charCodeAt(i)) | 0;
  return hash;
}
for (const n of [
  'host',
  'user-agent',
  'accept',
  'accept-encoding',
  'accept-language',
  'accept-ranges',
  'age',
  'authorization',
  'cache-control',
  'connection',
  'content-encoding',
  'content-language',
  'content-length',
  'content-type',
  'cookie',
  'date',
  'etag',
  'expect',
  'expires',
  'keep-alive',
  'last-modified',
  'location',
  'origin',
  'pragma',
  'proxy-connection',
  'range',
  'referer',
  'server',
  'set-cookie',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'vary',
  'via',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-real-ip',
  'x-request-id',
  'if-modified-since',
  'if-none-match',
  'access-control-allow-origin',
  'strict-transport-security',
  'grpc-status',
  'grpc-message',
  'grpc-encoding',
  'grpc-accept-encoding',
  'grpc-timeout',
  'x-envoy-upstream-service-time',
  'x-envoy-expected-rq-timeout-ms',
  'x-envoy-original-path',
  'x-b3-traceid',
  'x-b3-spanid',
  'x-b3-parentspanid',
  'x-b3-sampled',
  'traceparent',
  'tracestate',
]) {
  const slot = (nameHash(n) ^ n.length) & 1023;
  if (KNOWN_NAMES[slot] === undefined) KNOWN_NAMES[slot] = n;
}

/** The interned lowercase name at block[start, end), if it is a common one. */
function knownName(block: string, start: number, end: number, hash: number): string | undefined {
  const len = end - start;
  const n = KNOWN_NAMES[(hash ^ len) & 1023];
  if (n === undefined || n.length !== len) return undefined;
  for (let i = 0; i < len; i++) {
    let c = block.charCodeAt(start + i);
    if (c >= 65 && c <= 90) c |= 0x20;
    if (c !== n.charCodeAt(i)) return undefined;
  }
  return n;
}
// Control characters other than tab are not allowed in field values (RFC 9110 5.5).
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const BAD_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/;
/** Spaces and control characters (including DEL) may not appear in a request target. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const BAD_TARGET = /[\x00-\x20\x7f]/;

export class Http1Parser {
  private state = State.Head;
  private pending: Buffer | undefined;
  private remaining = 0;
  private head: MessageHead | undefined;
  /** For responses: the request was HEAD (no body whatever the headers say). */
  noBody = false;
  /**
   * The chunks given to execute are views valid only during the call (see network/direct-read):
   * bodies handed on and partial input kept for the next call are copied.
   */
  transientInput = false;

  /** Bytes of the caller's input that outlive the call (a pipelined rest, tunnel bytes). */
  keep(chunk: Buffer): Buffer {
    return this.transientInput ? own(chunk) : chunk;
  }

  constructor(
    readonly kind: 'request' | 'response',
    private readonly limits: ParserLimits,
    private readonly cb: ParserCallbacks,
  ) {}

  get messageComplete(): boolean {
    return this.state === State.Done;
  }

  get inProgress(): boolean {
    return this.state !== State.Head || this.pending !== undefined;
  }

  /** Ready for the next message on the same connection. */
  reset(): void {
    this.state = State.Head;
    this.head = undefined;
    this.noBody = false;
  }

  /**
   * Consumes bytes. Stops after a complete message and returns the unconsumed
   * rest (pipelined data), or undefined when everything was consumed.
   * Throws ParseError on malformed input.
   */
  execute(chunk: Buffer): Buffer | undefined {
    let buf = chunk;
    // Copies are needed only of bytes that are still the caller's transient view.
    let transient = this.transientInput;
    if (this.pending) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = undefined;
      transient = false;
    }
    let off = 0;
    while (off < buf.length) {
      switch (this.state) {
        case State.Head: {
          // Tolerate empty lines before a message (RFC 9112 2.2).
          while (off + 1 < buf.length && buf[off] === 13 && buf[off + 1] === 10) off += 2;
          const end = buf.indexOf(CRLF2_BUF, off);
          if (end < 0) {
            // A head with lines ended by bare LFs is malformed (Envoy's codec rejects it): say so
            // instead of waiting for a CRLF CRLF that will not come.
            if (hasBareLF(buf, off)) throw new ParseError(400, 'http1.codec_error', 'bare LF line ending');
            // Up to 3 bytes of the CRLF CRLF may be here already: the same head is refused
            // whether or not it arrived whole.
            if (buf.length - off > this.limits.maxHeaderBytes + 3)
              throw new ParseError(431, 'http1.headers_too_large', 'headers too large');
            if (off < buf.length) this.pending = transient ? own(buf.subarray(off)) : buf.subarray(off);
            return undefined;
          }
          if (end - off > this.limits.maxHeaderBytes)
            throw new ParseError(431, 'http1.headers_too_large', 'headers too large');
          const block = buf.toString('latin1', off, end);
          // Only the head is searched for bare LFs (a body or pipelined requests may follow it).
          if (block.includes('\n\n')) throw new ParseError(400, 'http1.codec_error', 'bare LF line ending');
          this.parseHead(block);
          off = end + 4;
          break;
        }
        case State.Body: {
          const n = Math.min(this.remaining, buf.length - off);
          this.remaining -= n;
          const piece = buf.subarray(off, off + n);
          off += n;
          this.cb.onBody(transient ? own(piece) : piece);
          if (this.remaining === 0) this.complete(undefined);
          break;
        }
        case State.UntilClose: {
          this.cb.onBody(transient ? own(buf.subarray(off)) : off === 0 ? buf : buf.subarray(off));
          off = buf.length;
          break;
        }
        case State.ChunkSize: {
          const eol = this.chunkSizeLine(buf, off);
          if (eol < 0) {
            if (buf.length - off > MAX_CHUNK_LINE + 1)
              throw new ParseError(400, 'http1.codec_error', 'chunk size line too long');
            this.pending = transient ? own(buf.subarray(off)) : buf.subarray(off);
            return undefined;
          }
          off = eol;
          this.state = this.remaining === 0 ? State.Trailers : State.ChunkData;
          break;
        }
        case State.ChunkData: {
          const n = Math.min(this.remaining, buf.length - off);
          this.remaining -= n;
          const piece = buf.subarray(off, off + n);
          off += n;
          this.cb.onBody(transient ? own(piece) : piece);
          if (this.remaining === 0) this.state = State.ChunkDataEnd;
          break;
        }
        case State.ChunkDataEnd: {
          if (buf.length - off < 2) {
            this.pending = transient ? own(buf.subarray(off)) : buf.subarray(off);
            return undefined;
          }
          if (buf.readUInt16LE(off) !== CRLF)
            throw new ParseError(400, 'http1.codec_error', 'missing CRLF after chunk');
          off += 2;
          this.state = State.ChunkSize;
          break;
        }
        case State.Trailers: {
          if (buf.length - off >= 2 && buf.readUInt16LE(off) === CRLF) {
            off += 2;
            this.complete(undefined);
            break;
          }
          const end = buf.indexOf(CRLF2_BUF, off);
          if (end < 0) {
            // As in a head: bare LF line endings are refused now, not waited out.
            if (hasBareLF(buf, off)) throw new ParseError(400, 'http1.codec_error', 'bare LF line ending');
            if (buf.length - off > this.limits.maxHeaderBytes + 3)
              throw new ParseError(431, 'http1.headers_too_large', 'trailers too large');
            this.pending = transient ? own(buf.subarray(off)) : buf.subarray(off);
            return undefined;
          }
          if (end - off > this.limits.maxHeaderBytes)
            throw new ParseError(431, 'http1.headers_too_large', 'trailers too large');
          const block = buf.toString('latin1', off, end);
          if (block.includes('\n\n')) throw new ParseError(400, 'http1.codec_error', 'bare LF line ending');
          const lines = block.split('\r\n');
          if (lines.length > this.limits.maxHeaderCount)
            throw new ParseError(431, 'http1.too_many_headers', 'too many trailers');
          const trailers: Headers = {};
          for (const line of lines) this.addHeader(trailers, line);
          off = end + 4;
          this.complete(trailers);
          break;
        }
        case State.Done:
          return buf.subarray(off);
      }
      if ((this.state as State) === State.Done) return off < buf.length ? buf.subarray(off) : undefined;
    }
    return undefined;
  }

  /**
   * `chunk-size [ chunk-ext ] CRLF` (RFC 9112 7.1) at `off`, scanned by byte: sets `remaining` and
   * returns the offset after the CRLF, or -1 when the line is not complete yet. Strict, as a
   * mismatch with another parser's reading is how a request hides in a body: the size is bare
   * hex digits (no sign, no surrounding space), only BWS may separate it from a `;` extension
   * (7.1.1), an extension holds no control characters (a bare CR or LF in one is the classic
   * smuggling vector), and the line ends in CRLF, never a bare LF.
   */
  private chunkSizeLine(buf: Buffer, off: number): number {
    const len = buf.length;
    let i = off;
    let size = 0;
    for (; i < len; i++) {
      const d = HEX[buf[i]!]!;
      if (d < 0) break;
      size = size * 16 + d;
      if (size > MAX_CHUNK_SIZE) throw new ParseError(400, 'http1.codec_error', 'chunk size overflow');
    }
    if (i === len) return -1;
    if (i === off) throw new ParseError(400, 'http1.codec_error', 'invalid chunk size');
    let c = buf[i]!;
    if (c !== 13) {
      while (c === 32 || c === 9) {
        if (++i === len) return -1;
        c = buf[i]!;
      }
      if (c !== 59 /* ';' */) throw new ParseError(400, 'http1.codec_error', 'invalid chunk size');
      // Extensions are ignored (as Envoy does), but must not contain control characters.
      for (i++; i < len; i++) {
        c = buf[i]!;
        if (c === 13) break;
        if ((c < 32 && c !== 9) || c === 127)
          throw new ParseError(400, 'http1.codec_error', 'invalid character in chunk extension');
      }
      if (i === len) return -1;
    }
    if (i - off > MAX_CHUNK_LINE) throw new ParseError(400, 'http1.codec_error', 'chunk size line too long');
    if (i + 1 === len) return -1;
    if (buf[i + 1] !== 10) throw new ParseError(400, 'http1.codec_error', 'bare CR in chunk size line');
    this.remaining = size;
    return i + 2;
  }

  /** The peer closed its side. Completes a read-until-close response; otherwise reports truncation. */
  finish(): 'complete' | 'truncated' | 'idle' {
    if (this.state === State.UntilClose) {
      this.complete(undefined);
      return 'complete';
    }
    if (this.state === State.Head && !this.pending) return 'idle';
    if (this.state === State.Done) return 'complete';
    return 'truncated';
  }

  private complete(trailers: Headers | undefined): void {
    this.state = State.Done;
    this.cb.onComplete(trailers);
  }

  /**
   * The fast path over a well-formed header block: one pass that slices names and values and
   * checks every character on the way. Anything unusual (a control character other than tab, a
   * bare CR or LF, folding, a bad name character, too many lines) returns false, and the careful
   * path re-parses the block to name the problem.
   */
  private addCleanHeaders(h: Headers, block: string, pos: number): boolean {
    const max = this.limits.maxHeaderCount;
    let count = 0;
    const len = block.length;
    while (pos < len) {
      if (++count > max) return false;
      let i = pos;
      let hash = 0;
      for (; i < len; i++) {
        let c = block.charCodeAt(i);
        if (c === 58 /* ':' */) break;
        if (c > 127 || TOKEN_CHAR[c] === 0) return false;
        if (c >= 65 && c <= 90) c |= 0x20;
        hash = (Math.imul(hash, 31) + c) | 0;
      }
      if (i === pos || i === len) return false;
      const colon = i++;
      // Optional whitespace around the value (RFC 9110 5.6.3).
      for (let c = block.charCodeAt(i); c === 32 || c === 9; c = block.charCodeAt(++i));
      const vs = i;
      let ve = i;
      for (; i < len; i++) {
        const c = block.charCodeAt(i);
        if (c > 32) {
          if (c === 127) return false;
          ve = i + 1;
        } else if (c === 13) break;
        else if (c !== 32 && c !== 9) return false;
      }
      // A CR must start the CRLF ending the line.
      if (i < len && block.charCodeAt(i + 1) !== 10) return false;
      let key = knownName(block, pos, colon, hash);
      if (key === undefined) {
        key = block.slice(pos, colon).toLowerCase();
        if (key === '__proto__' || key === 'constructor') return false; // see addOwn
      }
      const value = block.slice(vs, ve);
      const prev = h[key];
      if (prev === undefined) h[key] = value;
      else if (Array.isArray(prev)) prev.push(value);
      else h[key] = [prev, value];
      pos = i + 2;
    }
    return true;
  }

  /** The careful path: line by line, each checked and the first problem named. */
  private addHeaderLines(h: Headers, rest: string): void {
    const lines = rest.split('\r\n');
    if (lines.length > this.limits.maxHeaderCount)
      throw new ParseError(431, 'http1.too_many_headers', 'too many headers');
    for (const line of lines) {
      if (line.charCodeAt(0) === 32 || line.charCodeAt(0) === 9)
        throw new ParseError(400, 'http1.codec_error', 'obsolete line folding');
      this.addHeader(h, line);
    }
  }

  private addHeader(h: Headers, line: string): number {
    const colon = line.indexOf(':');
    if (colon <= 0) throw new ParseError(400, 'http1.codec_error', 'malformed header line');
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) throw new ParseError(400, 'http1.invalid_characters', 'invalid header name');
    const value = trimOWS(line, colon + 1, line.length);
    if (BAD_VALUE.test(value)) throw new ParseError(400, 'http1.invalid_characters', 'invalid header value');
    const key = name.toLowerCase();
    if (key === '__proto__' || key === 'constructor') {
      addOwn(h, key, value);
      return 1;
    }
    const prev = h[key];
    if (prev === undefined) h[key] = value;
    else if (Array.isArray(prev)) prev.push(value);
    else h[key] = [prev, value];
    return 1;
  }

  private parseHead(block: string): void {
    const firstEnd = block.indexOf('\r\n');
    const first = firstEnd < 0 ? block : block.slice(0, firstEnd);
    const head: MessageHead = {
      method: '',
      path: '',
      status: 0,
      minor: 1,
      headers: {},
      close: false,
      upgrade: false,
      chunked: false,
      contentLength: -1,
    };
    if (this.kind === 'request') {
      const s1 = first.indexOf(' ');
      const s2 = first.lastIndexOf(' ');
      if (s1 <= 0 || s2 <= s1) throw new ParseError(400, 'http1.codec_error', 'malformed request line');
      head.method = first.slice(0, s1);
      head.path = first.slice(s1 + 1, s2);
      const version = first.slice(s2 + 1);
      if (!TOKEN.test(head.method) || head.path === '' || BAD_TARGET.test(head.path))
        throw new ParseError(400, 'http1.codec_error', 'malformed request line');
      // Envoy rejects a fragment in the request target (http_reject_path_with_fragment).
      if (head.path.includes('#'))
        throw new ParseError(400, 'http1.invalid_url', 'fragment in the request target');
      // Absolute form (not origin form, which starts with '/'): userinfo would end up in
      // :authority. RFC 9110 4.2.4 has recipients treat it as an error; Envoy's codec rejects it.
      if (head.path.charCodeAt(0) !== 47 && hasUserinfo(head.path))
        throw new ParseError(400, 'http1.invalid_url', 'userinfo in the request target');
      if (version === 'HTTP/1.1') head.minor = 1;
      else if (version === 'HTTP/1.0') head.minor = 0;
      else throw new ParseError(400, 'http1.codec_error', `unsupported version '${version.slice(0, 16)}'`);
    } else {
      // HTTP/1.x SP 3DIGIT [SP reason]: checked by character (a regex match allocated per response).
      const minor = first.charCodeAt(7) - 48;
      const d0 = first.charCodeAt(9) - 48;
      const d1 = first.charCodeAt(10) - 48;
      const d2 = first.charCodeAt(11) - 48;
      if (
        !first.startsWith('HTTP/1.') ||
        (minor !== 0 && minor !== 1) ||
        first.charCodeAt(8) !== 32 ||
        !(d0 >= 1 && d0 <= 9 && d1 >= 0 && d1 <= 9 && d2 >= 0 && d2 <= 9) ||
        (first.length > 12 && first.charCodeAt(12) !== 32)
      )
        throw new ParseError(400, 'http1.codec_error', 'malformed status line');
      for (let i = 13; i < first.length; i++) {
        const c = first.charCodeAt(i);
        if ((c < 32 && c !== 9) || c === 127)
          throw new ParseError(400, 'http1.codec_error', 'malformed status line');
      }
      head.minor = minor;
      head.status = d0 * 100 + d1 * 10 + d2;
    }
    let h = head.headers;
    if (firstEnd >= 0 && !this.addCleanHeaders(h, block, firstEnd + 2)) {
      // Something unusual: line by line, each line checked and the first problem named.
      h = head.headers = {};
      this.addHeaderLines(h, block.slice(firstEnd + 2));
    }

    // Connection options are whole tokens: "xupgrade" must not make a request an upgrade.
    const conn = h.connection;
    if (conn === undefined) head.close = head.minor === 0;
    else {
      head.close = head.minor === 0 ? !hasToken(conn, 'keep-alive') : hasToken(conn, 'close');
      head.upgrade = h.upgrade !== undefined && hasToken(conn, 'upgrade');
    }
    // RFC 9112 3.2: more than one Host line is 400.
    if (this.kind === 'request' && Array.isArray(h.host))
      throw new ParseError(400, 'http1.codec_error', 'more than one host header');

    const te = h['transfer-encoding'];
    const cl = h['content-length'];
    if (this.kind === 'request' && head.method === 'CONNECT') this.checkConnect(head, te, cl);
    if (te !== undefined) {
      // Codings are compared after trimming SP and HTAB only: String.trim() also drops NBSP
      // (0xA0), so "\xa0chunked" would be chunked here and an unknown coding to the next hop.
      const chunkedOnly = typeof te === 'string' && isChunked(te, 0, te.length);
      // Envoy accepts only "chunked" itself in a request; other codings are 501.
      if (this.kind === 'request' && !chunkedOnly)
        throw new ParseError(501, 'http1.invalid_transfer_encoding', 'unsupported transfer-encoding');
      if (head.minor === 0 && this.kind === 'request')
        throw new ParseError(400, 'http1.codec_error', 'transfer-encoding in an HTTP/1.0 request');
      if (cl !== undefined)
        throw new ParseError(
          400,
          'http1.content_length_and_chunked_not_allowed',
          'both content-length and transfer-encoding',
        );
      // A response is chunked when chunked is its last coding (RFC 9112 6.3), else read until close.
      if (chunkedOnly || lastCodingIsChunked(te)) head.chunked = true;
    } else if (cl !== undefined) {
      // One value of 1*DIGIT. Repeated values, even equal ones ("3, 3" or two lines), are 400
      // as in Envoy's codec: RFC 9110 8.6 allows accepting them, but a next hop may not.
      const n = typeof cl === 'string' ? contentLength(cl) : -1;
      if (n < 0) throw new ParseError(400, 'http1.content_length_not_allowed', 'invalid content-length');
      head.contentLength = n;
    }

    this.head = head;
    this.cb.onHead(head);

    // Body framing (RFC 9112 6.3).
    if (this.kind === 'response') {
      const s = head.status;
      if (this.noBody || (s >= 100 && s < 200) || s === 204 || s === 304) {
        this.complete(undefined);
        return;
      }
      if (head.chunked) this.state = State.ChunkSize;
      else if (head.contentLength >= 0) this.startLength(head.contentLength);
      else this.state = State.UntilClose;
      return;
    }
    if (head.chunked) this.state = State.ChunkSize;
    else if (head.contentLength > 0) this.startLength(head.contentLength);
    else this.complete(undefined);
  }

  /**
   * CONNECT (RFC 9110 9.3.6) as Envoy's codec takes it: an authority-form target, no body framing
   * (a body has no defined meaning: content-length other than 0 is 400, transfer-encoding 501),
   * and whatever follows the head is the tunnel's, as after an Upgrade.
   */
  private checkConnect(head: MessageHead, te: Headers[string], cl: Headers[string]): void {
    if (!AUTHORITY_FORM.test(head.path))
      throw new ParseError(400, 'http1.invalid_url', 'CONNECT target is not host:port');
    if (te !== undefined)
      throw new ParseError(501, 'http1.invalid_transfer_encoding', 'transfer-encoding in a CONNECT request');
    if (cl !== undefined) {
      if (cl !== '0') throw new ParseError(400, 'http1.body_disallowed', 'CONNECT request with a body');
      delete head.headers['content-length'];
    }
    head.upgrade = true;
  }

  private startLength(n: number): void {
    if (n === 0) {
      this.complete(undefined);
      return;
    }
    this.remaining = n;
    this.state = State.Body;
  }

  /** The head of the message being parsed (after onHead). */
  get current(): MessageHead | undefined {
    return this.head;
  }
}

const CRLF2_BUF = Buffer.from('\r\n\r\n');

/** A LF in buf[from..] not preceded by CR (a line ended the way Envoy's codec rejects). */
function hasBareLF(buf: Buffer, from: number): boolean {
  for (let i = buf.indexOf(10, from); i >= 0; i = buf.indexOf(10, i + 1)) {
    if (i === from || buf[i - 1] !== 13) return true;
  }
  return false;
}

/**
 * Header maps are plain objects, and these two names (the only lower-case members of
 * Object.prototype) would read inherited values: "constructor" was forwarded as Object's source
 * text, and "__proto__" replaced the map's prototype. They are set as own properties instead.
 */
function addOwn(h: Headers, key: string, value: string): void {
  const prev = Object.hasOwn(h, key) ? h[key] : undefined;
  const next = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
  Object.defineProperty(h, key, { value: next, enumerable: true, writable: true, configurable: true });
}

/** s[start, end) without leading and trailing SP and HTAB (RFC 9110 OWS; not String.trim's set). */
function trimOWS(s: string, start: number, end: number): string {
  while (start < end && isOWS(s.charCodeAt(start))) start++;
  while (end > start && isOWS(s.charCodeAt(end - 1))) end--;
  return s.slice(start, end);
}

function isOWS(c: number): boolean {
  return c === 32 || c === 9;
}

/** Whether s[start, end) is the token "chunked" (any case) between OWS. */
function isChunked(s: string, start: number, end: number): boolean {
  while (start < end && isOWS(s.charCodeAt(start))) start++;
  while (end > start && isOWS(s.charCodeAt(end - 1))) end--;
  if (end - start !== 7) return false;
  for (let i = 0; i < 7; i++) if ((s.charCodeAt(start + i) | 0x20) !== CHUNKED.charCodeAt(i)) return false;
  return true;
}
const CHUNKED = 'chunked';

/** A response's transfer-coding list (one line or several) ends in chunked. */
function lastCodingIsChunked(te: string | string[]): boolean {
  const last = Array.isArray(te) ? te[te.length - 1]! : te;
  return isChunked(last, last.lastIndexOf(',') + 1, last.length);
}

/** A content-length value of 1 to 15 digits between OWS, or -1 (anything else, a list included). */
function contentLength(s: string): number {
  let start = 0;
  let end = s.length;
  while (start < end && isOWS(s.charCodeAt(start))) start++;
  while (end > start && isOWS(s.charCodeAt(end - 1))) end--;
  if (end === start || end - start > 15) return -1;
  let n = 0;
  for (let i = start; i < end; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

/** Whether a comma-separated list (one header line or several) holds `token` (lower case), any case. */
function hasToken(v: string | string[], token: string): boolean {
  if (Array.isArray(v)) {
    for (const x of v) if (hasToken(x, token)) return true;
    return false;
  }
  const len = v.length;
  let start = 0;
  while (start < len) {
    let end = v.indexOf(',', start);
    if (end < 0) end = len;
    let a = start;
    let b = end;
    while (a < b && isOWS(v.charCodeAt(a))) a++;
    while (b > a && isOWS(v.charCodeAt(b - 1))) b--;
    if (b - a === token.length) {
      let i = 0;
      for (; i < token.length; i++) {
        let c = v.charCodeAt(a + i);
        if (c >= 65 && c <= 90) c |= 0x20;
        if (c !== token.charCodeAt(i)) break;
      }
      if (i === token.length) return true;
    }
    start = end + 1;
  }
  return false;
}

/** An absolute-form target (scheme "://" authority ...) whose authority holds an '@'. */
function hasUserinfo(target: string): boolean {
  const s = target.indexOf('://');
  if (s < 0) return false;
  for (let i = s + 3; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c === 47 /* / */ || c === 63 /* ? */) return false;
    if (c === 64 /* @ */) return true;
  }
  return false;
}

/** A CONNECT target: host:port, the host a name, an IPv4 address or a bracketed IPv6 address. */
const AUTHORITY_FORM = /^(?:\[[0-9A-Fa-f:.]+\]|[^\s:/?#@[\]]+):\d{1,5}$/;
