// Herald's downstream HTTP/1.1 codec: one per client connection. Requests are
// answered one at a time and in order; pipelined requests wait (reading is
// paused) until the response before them is complete, as in Envoy.

import type net from 'node:net';
import { logger } from '../../common/logger.js';
import type { Headers } from '../../common/substitution-formatter.js';
import { StreamTimer, timerMs } from '../../common/timers.js';
import { readDirect } from '../../network/direct-read.js';
import { BodySource, type ResponseSink, type ServerStream } from '../codec.js';
import { Http1Parser, type MessageHead, ParseError } from './parser.js';
import {
  type HeldHead,
  headWithBody,
  holdUntilReadEnds,
  httpDate,
  JOIN_HEAD_MAX_BODY,
  LAST_CHUNK,
  serializeHead,
  writeChunk,
} from './serializer.js';

const log = logger('http');

export interface Http1ServerOptions {
  maxHeaderBytes: number;
  maxHeaderCount: number;
  /** Close idle keep-alive connections after this long (ms); 0 = never. */
  idleTimeoutMs: number;
  /** Accept HTTP/1.0 (Envoy's accept_http_10); otherwise answer 426. */
  acceptHttp10: boolean;
  /** Held request-body bytes before reading pauses (per_connection_buffer_limit_bytes). */
  bufferLimit: number;
  /** Envoy's date header on every response. */
  serverName: string;
  /** request_headers_timeout: headers must arrive within this long of the first byte (0 = off). */
  requestHeadersTimeoutMs: number;
  /** stream_idle_timeout: bounds the header phase when request_headers_timeout is off (0 = off). */
  streamIdleTimeoutMs: number;
  /** max_connection_duration: drain the connection after this long (0 = off). */
  maxConnectionDurationMs: number;
  /** max_requests_per_connection: the N-th response closes the connection (0 = off). */
  maxRequestsPerConnection: number;
  /**
   * delayed_close_timeout: once Herald ends a connection, how long the client has to close its
   * side before the socket is closed anyway (0 = as soon as the final write is flushed).
   */
  delayedCloseTimeoutMs: number;
}

export interface Http1ServerCallbacks {
  onStream(stream: ServerStream): void;
  /** A protocol error closed the connection (for stats). */
  onProtocolError(e: ParseError): void;
  /** Connection-level limits reached (for stats). */
  onLimit(which: 'headers_timeout' | 'idle_headers' | 'max_duration' | 'max_requests'): void;
}

class Http1ServerStream implements ServerStream, ResponseSink, HeldHead {
  readonly headers: Headers;
  readonly body: BodySource;
  owner: { onStreamClose(complete: boolean): void } | undefined;
  private drainCbs: Array<() => void> = [];
  headersSent = false;
  finished = false;
  private chunked = false;
  private closeAfter: boolean;
  /** After a 101 or a CONNECT 2xx: the connection carries raw bytes both ways. */
  get tunnelled(): boolean {
    return this.raw;
  }
  /** The request asked to upgrade (WebSocket): after a 101, the connection is a byte tunnel. */
  readonly upgradeRequest: boolean;
  /** A CONNECT request: after a 2xx, the connection is a byte tunnel. */
  private readonly connect: boolean;
  private raw = false;
  /** The response head, waiting for the body's first bytes to leave in the same write. */
  private heldHead: string | undefined;

  constructor(
    private readonly conn: Http1ServerConnection,
    head: MessageHead,
    readonly protocol: 'HTTP/1.0' | 'HTTP/1.1',
    scheme: string,
  ) {
    const h = head.headers;
    const host = h.host;
    delete h.host;
    h[':method'] = head.method;
    h[':scheme'] = scheme;
    if (host !== undefined) h[':authority'] = Array.isArray(host) ? host[0]! : host;
    this.connect = head.method === 'CONNECT';
    const abs = this.connect ? null : ABSOLUTE_FORM.exec(head.path);
    // CONNECT has no path: its authority-form target is the :authority (Envoy ignores Host).
    if (this.connect) h[':authority'] = head.path;
    else if (abs) {
      // Absolute-form target (a client using Herald as its HTTP proxy): as Envoy's codec does,
      // the URL's host becomes :authority and its path :path.
      h[':authority'] = abs[2]!;
      h[':path'] = abs[3] || '/';
    } else h[':path'] = head.path;
    this.headers = h;
    this.closeAfter = head.close;
    this.upgradeRequest = head.upgrade && (head.minor === 1 || this.connect);
    this.body = new BodySource(
      () => conn.pauseReading(),
      () => conn.resumeReading(),
      conn.options.bufferLimit,
    );
  }

  get response(): ResponseSink {
    return this;
  }

  writeHeaders(status: number, headers: Headers, endStream: boolean): void {
    if (this.headersSent) return;
    this.headersSent = true;
    if (status === 101 && this.upgradeRequest) {
      // Switching protocols: from here on both directions are raw bytes.
      this.raw = true;
      this.closeAfter = true;
      headers.date = httpDate();
      this.conn.socket.write(serializeHead('HTTP/1.1 101 Switching Protocols\r\n', headers), 'latin1');
      if (endStream) this.finish();
      return;
    }
    if (this.connect && status >= 200 && status < 300) {
      // CONNECT established: no body framing (RFC 9110 9.3.6), raw bytes both ways from here on.
      this.raw = true;
      this.closeAfter = true;
      delete headers['content-length'];
      delete headers['transfer-encoding'];
      if (headers.date === undefined) headers.date = httpDate();
      this.conn.socket.write(serializeHead(`HTTP/1.1 ${status} ${reason(status)}\r\n`, headers), 'latin1');
      if (endStream) this.finish();
      return;
    }
    // An upgrade request answered without a 101 (its tunnel bytes may have been read), or a
    // response before the request body was read: the connection closes after it, and says so.
    if (this.upgradeRequest || !this.body.ended) this.closeAfter = true;
    const isHead = this.headers[':method'] === 'HEAD';
    const noBody = isHead || status === 204 || status === 304 || (status >= 100 && status < 200);
    if (this.conn.draining) this.closeAfter = true;
    if (!noBody && headers['content-length'] === undefined && !endStream) {
      if (this.protocol === 'HTTP/1.1') {
        headers['transfer-encoding'] = 'chunked';
        this.chunked = true;
      } else {
        this.closeAfter = true; // HTTP/1.0: the body ends with the connection
      }
    } else if (endStream && !noBody && headers['content-length'] === undefined) {
      headers['content-length'] = '0';
    }
    if (this.closeAfter) headers.connection = 'close';
    else if (this.protocol === 'HTTP/1.0') headers.connection = 'keep-alive';
    // Envoy keeps an upstream's date and adds one when absent.
    if (headers.date === undefined) headers.date = httpDate();
    const head = serializeHead(`HTTP/1.1 ${status} ${reason(status)}\r\n`, headers);
    const s = this.conn.socket;
    if (endStream) {
      s.write(head, 'latin1');
      this.finish();
    } else {
      this.heldHead = head;
      holdUntilReadEnds(this);
    }
  }

  /** The body did not follow within the read: the head goes out alone. */
  flushHead(): void {
    const head = this.heldHead;
    if (head === undefined) return;
    this.heldHead = undefined;
    if (!this.conn.socket.destroyed) this.conn.socket.write(head, 'latin1');
  }

  writeData(chunk: Buffer, endStream: boolean): boolean {
    if (this.finished) return true;
    const s = this.conn.socket;
    let ok = true;
    const head = this.heldHead;
    if (head !== undefined && chunk.length <= JOIN_HEAD_MAX_BODY) {
      this.heldHead = undefined;
      ok = s.write(headWithBody(head, chunk, this.chunked, endStream));
    } else if (this.chunked) {
      this.flushHead();
      if (chunk.length) ok = writeChunk(s, chunk);
      if (endStream) s.write(LAST_CHUNK);
    } else {
      this.flushHead();
      if (chunk.length) ok = s.write(chunk);
    }
    // Backpressure at per_connection_buffer_limit_bytes: keep writing while the socket's
    // buffer is under the limit; past it, the caller waits for 'drain'.
    if (!ok && s.writableLength < this.conn.options.bufferLimit) ok = true;
    if (endStream) {
      // A tunnel's upstream half-closed: pass the FIN on; the client may still send.
      if (this.raw) s.end();
      this.finish();
    }
    return ok;
  }

  writeTrailers(trailers: Headers): void {
    if (this.finished) return;
    this.flushHead();
    const s = this.conn.socket;
    if (this.chunked) s.write(serializeHead('0\r\n', trailers), 'latin1');
    this.finish();
  }

  onDrain(cb: () => void): void {
    if (!this.conn.socket.writableNeedDrain) {
      queueMicrotask(cb);
      return;
    }
    if (this.drainCbs.length === 0) this.conn.socket.once('drain', () => this.flushDrain());
    this.drainCbs.push(cb);
  }

  private flushDrain(): void {
    const cbs = this.drainCbs;
    this.drainCbs = [];
    for (const cb of cbs) cb();
  }

  reset(): void {
    if (this.finished) return;
    this.abort();
    this.conn.socket.destroy();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    const owner = this.owner;
    this.owner = undefined;
    owner?.onStreamClose(true);
    this.conn.onResponseComplete(this, this.closeAfter);
  }

  /** The connection went away before the response was complete. */
  abort(): void {
    if (this.finished) return;
    this.finished = true;
    const owner = this.owner;
    this.owner = undefined;
    owner?.onStreamClose(false);
  }

  /** The request said "Expect: 100-continue": answer it now, as Envoy does by default. */
  sendContinue(): void {
    this.conn.socket.write('HTTP/1.1 100 Continue\r\n\r\n');
  }
}

export class Http1ServerConnection {
  private readonly parser: Http1Parser;
  private active: Http1ServerStream | undefined;
  /** Bytes of pipelined requests read while a response was in progress. */
  private backlog: Buffer | undefined;
  /** Parsing waits (a response in flight, or unread answers piling up); reads go to backlog. */
  private readPaused = false;
  /** The client's FIN arrived while readPaused: handled once the backlog is parsed. */
  private endPending = false;
  private bodyPaused = false;
  draining = false;
  /** drain(true): close after the response in flight even if its head promised keep-alive. */
  private drainCloses = false;
  private closed = false;
  /** Inside parser.execute (callbacks run synchronously from it). */
  private parsing = false;
  /** The client half-closed: close once the response in flight is written. */
  private peerEnded = false;
  /** The upgrade request whose connection now carries raw bytes to it. */
  private tunnel: Http1ServerStream | undefined;
  private requests = 0;
  /** Bounds the header phase of each request (see feed). */
  private readonly headersTimer: StreamTimer;
  /** Envoy's connection idle timeout: no request in progress for this long closes it. */
  private readonly idleTimer: StreamTimer | undefined;
  private durationTimer: NodeJS.Timeout | undefined;
  /** Herald has ended the connection: input is read and discarded until the client closes. */
  private closing = false;
  /** delayed_close_timeout, armed once closing. */
  private closeTimer: StreamTimer | undefined;
  /** Bytes not yet flushed when closeTimer was last armed: less at expiry is progress. */
  private unflushed = 0;

  constructor(
    readonly socket: net.Socket,
    readonly options: Http1ServerOptions,
    private readonly scheme: string,
    private readonly callbacks: Http1ServerCallbacks,
  ) {
    this.parser = new Http1Parser(
      'request',
      { maxHeaderBytes: options.maxHeaderBytes, maxHeaderCount: options.maxHeaderCount },
      {
        onHead: (h) => this.onHead(h),
        onBody: (c) => this.active?.body.push(c),
        onComplete: (t) => {
          if (!this.active?.upgradeRequest) this.active?.body.end(t);
        },
      },
    );
    if (readDirect(socket, (c) => this.onData(c))) this.parser.transientInput = true;
    else socket.on('data', (c: Buffer) => this.onData(c));
    socket.on('end', () => this.onEnd());
    socket.on('close', () => this.onClose());
    socket.on('error', () => {});
    this.headersTimer = new StreamTimer(() => {
      this.callbacks.onLimit(this.options.requestHeadersTimeoutMs > 0 ? 'headers_timeout' : 'idle_headers');
      this.socket.destroy();
    });
    if (options.idleTimeoutMs > 0) {
      this.idleTimer = new StreamTimer(() => this.onIdle());
      this.idleTimer.arm(options.idleTimeoutMs);
    }
    if (options.maxConnectionDurationMs > 0) {
      this.durationTimer = setTimeout(() => {
        callbacks.onLimit('max_duration');
        this.drain();
      }, timerMs(options.maxConnectionDurationMs));
    }
  }

  pauseReading(): void {
    if (this.closing) return; // reading goes on until the client's FIN
    this.bodyPaused = true;
    this.socket.pause();
  }

  resumeReading(): void {
    this.bodyPaused = false;
    if (!this.readPaused) this.socket.resume();
  }

  /** Bytes read before this connection took the socket (codec sniffing). */
  receive(chunk: Buffer): void {
    if (!this.closed) this.onData(chunk);
  }

  private onData(chunk: Buffer): void {
    if (this.closing) return;
    if (this.tunnel) {
      this.tunnel.body.push(this.parser.keep(chunk));
      return;
    }
    if (this.readPaused) {
      this.backlog = this.backlog ? Buffer.concat([this.backlog, chunk]) : this.parser.keep(chunk);
      // Pipelined bytes are held, not parsed, until the response in flight is done; past the
      // buffer limit the socket stops being read.
      if (this.backlog.length >= this.options.bufferLimit) this.socket.pause();
      return;
    }
    this.feed(chunk);
  }

  private feed(chunk: Buffer): void {
    if (this.closing) return; // e.g. requests pipelined after a `connection: close` one
    if (!this.active && !this.headersTimer.armed && !this.parser.inProgress) {
      // The header phase is bounded from the first byte: by request_headers_timeout, else by the
      // stream idle timeout (Envoy's stream exists from the first byte), so a client trickling
      // header bytes cannot hold a connection forever.
      const headersTimeout = this.options.requestHeadersTimeoutMs;
      this.idleTimer?.disarm(); // a request has begun (Envoy's stream exists from here)
      this.headersTimer.arm(headersTimeout > 0 ? headersTimeout : this.options.streamIdleTimeoutMs);
    }
    let rest: Buffer | undefined;
    try {
      this.parsing = true;
      rest = this.parser.execute(chunk);
    } catch (e) {
      if (e instanceof ParseError) {
        this.protocolError(e);
        return;
      }
      // A bug must cost this connection, not the process.
      log.error(`HTTP/1 connection failed: ${(e as Error).stack ?? e}`);
      this.active?.abort();
      this.socket.destroy();
      return;
    } finally {
      this.parsing = false;
    }
    if (this.parser.messageComplete) {
      if (this.active?.upgradeRequest) {
        // Bytes after an upgrade request are the tunnel's, whatever the upstream answers.
        this.tunnel = this.active;
        if (rest?.length) this.tunnel.body.push(this.parser.keep(rest));
        return;
      }
      if (this.active && !this.active.finished) {
        // A pipelined request waits until the current response is done. The socket is not
        // paused: most requests complete before their response, and pausing would cost two
        // epoll_ctl calls per request; onData holds what arrives meanwhile.
        this.readPaused = true;
        if (rest?.length)
          this.backlog = this.backlog ? Buffer.concat([rest, this.backlog]) : this.parser.keep(rest);
        return;
      }
      this.parser.reset();
      if (rest?.length) {
        if (this.socket.writableNeedDrain) {
          // Answers are piling up unread (a client pipelining without reading): stop parsing
          // until they drain, so memory stays bounded.
          this.waitForDrain(rest);
          return;
        }
        this.feed(rest);
      }
    }
  }

  private waitForDrain(rest: Buffer): void {
    this.readPaused = true;
    this.backlog = this.backlog ? Buffer.concat([rest, this.backlog]) : this.parser.keep(rest);
    this.socket.once('drain', () => {
      // onResponseComplete resumes once that response ends.
      if (this.active || this.closed || this.closing) return;
      this.releaseBacklog();
    });
  }

  /** Parsing may go on: the held bytes first, then a FIN that came after them. */
  private releaseBacklog(): void {
    this.readPaused = false;
    const b = this.backlog;
    this.backlog = undefined;
    if (!this.bodyPaused) this.socket.resume();
    if (b) this.feed(b);
    if (this.endPending && !this.readPaused && !this.closed) {
      this.endPending = false;
      this.onEnd();
    }
  }

  private onHead(h: MessageHead): void {
    this.idleTimer?.disarm();
    this.headersTimer.disarm();
    const max = this.options.maxRequestsPerConnection;
    if (max > 0 && ++this.requests >= max) {
      this.callbacks.onLimit('max_requests');
      this.draining = true; // this response carries connection: close
    }
    if (h.minor === 0 && !this.options.acceptHttp10) {
      // Envoy rejects HTTP/1.0 unless accept_http_10 is set.
      this.writeErrorAndClose(426, 'Upgrade Required');
      throw new ParseError(426, 'http1.http10_not_allowed', 'HTTP/1.0 not allowed');
    }
    const stream = new Http1ServerStream(this, h, h.minor === 0 ? 'HTTP/1.0' : 'HTTP/1.1', this.scheme);
    this.active = stream;
    // No body: the request ends with its headers (the router then sends none upstream).
    // An upgrade request's "body" is the tunnel that may follow.
    if (!h.chunked && h.contentLength <= 0 && !stream.upgradeRequest) stream.body.end();
    const expect = stream.headers.expect;
    if (typeof expect === 'string' && expect.toLowerCase() === '100-continue' && h.minor === 1) {
      delete stream.headers.expect;
      stream.sendContinue();
    }
    this.callbacks.onStream(stream);
  }

  /** Called when a response has been fully written. */
  onResponseComplete(stream: Http1ServerStream, close: boolean): void {
    if (stream !== this.active) return;
    const requestDone = stream.body.ended;
    this.active = undefined;
    // A drain that came after this response's head (which promised keep-alive) closes only after
    // the next response, which says so: the client may already be sending on this connection.
    if (close || this.drainCloses || this.peerEnded) {
      // A tunnel's client may go on sending after the upstream's FIN: only the write side ends.
      if (!stream.tunnelled) this.endConnection();
      else if (!this.socket.writableEnded) this.socket.end();
      return;
    }
    if (!requestDone) {
      // Answered before the request body finished (e.g. a local reply): Envoy closes the
      // connection rather than pass on the rest of an unbounded body.
      stream.body.discard();
      this.endConnection();
      return;
    }
    this.idleTimer?.arm(this.options.idleTimeoutMs);
    // Answered from inside the parse (a local reply to the headers): the parse loop goes on
    // to the next message itself.
    if (this.parsing) return;
    this.parser.reset();
    if (this.readPaused) {
      if (this.socket.writableNeedDrain && this.backlog) {
        const b = this.backlog;
        this.backlog = undefined;
        this.waitForDrain(b);
        return;
      }
      this.releaseBacklog();
    }
  }

  private protocolError(e: ParseError): void {
    this.callbacks.onProtocolError(e);
    log.debug(`downstream HTTP/1 protocol error: ${e.message}`);
    if (this.active && !this.active.finished) {
      if (!this.active.headersSent) this.writeErrorAndClose(e.status, reason(e.status));
      else this.socket.destroy();
      this.active.abort();
      return;
    }
    if (e.status !== 426) this.writeErrorAndClose(e.status, reason(e.status));
  }

  private writeErrorAndClose(status: number, body: string): void {
    this.endConnection(
      `HTTP/1.1 ${status} ${reason(status)}\r\ncontent-length: ${body.length}\r\ncontent-type: text/plain\r\ndate: ${httpDate()}\r\nserver: ${this.options.serverName}\r\nconnection: close\r\n\r\n${body}`,
    );
  }

  /**
   * Ends the connection after `last` (and what was written before), as Envoy's delayed close
   * does. Input is still read, and discarded, so the client's FIN is seen and the socket (half
   * open: listeners allow it) is released as soon as both sides are done; a client that does not
   * close is cut off delayed_close_timeout after the last write progress, so it cannot hold the
   * fd. With 0 the socket closes as soon as the write is flushed.
   */
  private endConnection(last?: string): void {
    const s = this.socket;
    if (this.closing || this.closed || s.destroyed) return;
    this.closing = true;
    this.headersTimer.disarm();
    this.idleTimer?.disarm();
    // Pipelined bytes held for later go with the connection.
    this.backlog = undefined;
    this.readPaused = false;
    this.bodyPaused = false;
    if (!s.writableEnded) {
      if (last === undefined) s.end();
      else s.end(last);
    }
    const ms = this.options.delayedCloseTimeoutMs;
    if (ms > 0) {
      this.unflushed = s.writableLength;
      this.closeTimer = new StreamTimer(() => this.onDelayedClose());
      this.closeTimer.arm(ms);
      // The flush completing is progress too: the client gets the full delay from there.
      if (!s.writableFinished)
        s.once('finish', () => {
          if (!this.closed) this.closeTimer?.arm(ms);
        });
    } else if (s.writableFinished) s.destroy();
    else s.once('finish', () => s.destroy());
    s.resume();
  }

  private onDelayedClose(): void {
    const s = this.socket;
    if (s.destroyed) return;
    // As in Envoy, write progress restarts the delay: a slow reader still gets the whole reply.
    if (!s.writableFinished && s.writableLength < this.unflushed) {
      this.unflushed = s.writableLength;
      this.closeTimer?.arm(this.options.delayedCloseTimeoutMs);
      return;
    }
    s.destroy();
  }

  private onEnd(): void {
    // Herald ended the connection first: with both sides done, the socket closes by itself.
    if (this.closing) return;
    if (this.readPaused && !this.closed) {
      // Pipelined requests read before the FIN are still waiting: it counts after them.
      this.endPending = true;
      return;
    }
    if (this.tunnel) {
      // The client half-closed the tunnel: the FIN travels to the upstream.
      this.tunnel.body.end();
      return;
    }
    // The client half-closed. Finish the response in progress (it may still be read), then
    // close; with nothing in flight, close now.
    this.peerEnded = true;
    const outcome = this.parser.finish();
    if (!this.active) {
      this.endConnection();
      return;
    }
    // A request cut short: HTTP/1 has no half-close, so the stream is reset (Envoy's behaviour)
    // rather than a truncated request being passed on as complete.
    if (outcome === 'truncated') {
      this.active.abort();
      this.socket.destroy();
    }
  }

  private onClose(): void {
    this.closed = true;
    this.headersTimer.disarm();
    this.idleTimer?.disarm();
    clearTimeout(this.durationTimer);
    this.closeTimer?.disarm();
    this.active?.abort();
    this.active = undefined;
  }

  private onIdle(): void {
    if (!this.active) this.socket.destroy();
  }

  /** Stop keep-alive: the next response carries connection: close; idle connections close now. */
  drain(closeIdle = true): void {
    this.draining = true;
    if (!closeIdle) return;
    this.drainCloses = true;
    // A tunnel the upstream half-closed is left to its client (its bytes still go upstream).
    if (!this.active && !this.tunnel) this.endConnection();
  }
}

const REASONS: Record<number, string> = {
  100: 'Continue',
  101: 'Switching Protocols',
  200: 'OK',
  201: 'Created',
  202: 'Accepted',
  204: 'No Content',
  206: 'Partial Content',
  301: 'Moved Permanently',
  302: 'Found',
  303: 'See Other',
  304: 'Not Modified',
  307: 'Temporary Redirect',
  308: 'Permanent Redirect',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  413: 'Payload Too Large',
  414: 'URI Too Long',
  426: 'Upgrade Required',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

const ABSOLUTE_FORM = /^(https?):\/\/([^/?#]+)(.*)$/i;

export function reason(status: number): string {
  return REASONS[status] ?? 'Unknown';
}
