// Reads plain TCP sockets into one buffer shared by every socket on the thread, through
// Node's `onread` mechanism, instead of Node's default read path: a fresh 64 KiB backing store
// per read, shrunk to size, wrapped in a Buffer, then pushed through the Readable stream's
// buffering and 'data' events. On the HTTP/1 proxy benchmark that default path is a measurable
// share of each request (see BENCHMARKS.md), so the codecs read this way when they can.
//
// The chunk handed to the callback is a view of the shared buffer, valid only during the call:
// whoever keeps bytes past it (a partial head, a body chunk, pipelined data) copies them.
// Sharing one buffer is safe because reads are delivered one at a time on the event loop and
// each is consumed before the next one can land.
//
// Node offers `onread` only as a constructor option (net.connect / new net.Socket); sockets a
// server accepts are given the same two fields that option sets. Should a Node version lack
// them, `readDirect` returns false and the caller keeps its 'data' listener.
import net from 'node:net';
import { withClock } from '../common/clock.js';

type ReadCallback = (chunk: Buffer) => void;

const SHARED = Buffer.allocUnsafe(64 * 1024);

function socketSymbol(name: string): symbol | undefined {
  return Object.getOwnPropertySymbols(new net.Socket()).find((s) => s.description === name);
}

const kBuffer = socketSymbol('kBuffer');
const kBufferCb = socketSymbol('kBufferCb');

interface StreamHandle {
  useUserBuffer?: (buf: Uint8Array) => void;
}

/**
 * Delivers the socket's bytes to `onRead` from the shared buffer. Returns false (and changes
 * nothing) when the socket can't be read this way: TLS, a wrapped stream, or a Node without the
 * mechanism. 'end', 'close', pause() and resume() keep working as usual. Bytes already buffered
 * in the socket's Readable side (read by listener filters, then put back with unshift) are
 * delivered first, on the next tick: before any new read, as no I/O callback can come sooner.
 */
export function readDirect(socket: net.Socket, onRead: ReadCallback): boolean {
  if (!kBuffer || !kBufferCb) return false;
  if (socket.constructor !== net.Socket) return false;
  const s = socket as unknown as Record<symbol, unknown> & { _handle?: StreamHandle | null };
  const cb = (n: number, buf: Buffer) => {
    withClock(onRead, buf.subarray(0, n));
  };
  if (s[kBuffer] === SHARED) {
    // Already read this way (codec sniffing): the new reader takes over from the next read.
    s[kBufferCb] = cb;
    return true;
  }
  const handle = s._handle;
  if (!handle || typeof handle.useUserBuffer !== 'function' || s[kBuffer]) return false;
  s[kBuffer] = SHARED;
  s[kBufferCb] = cb;
  handle.useUserBuffer(SHARED);
  if (socket.readableLength > 0) {
    // Taken now, or the Readable side would emit them to no one once the socket resumes; handed
    // over on a tick queued before the read, so ahead of an 'end' the read may schedule.
    const taken: Buffer[] = [];
    process.nextTick(deliverTaken, socket, taken);
    const b = socket.read() as Buffer | null;
    if (b) taken.push(b);
  }
  return true;
}

/** Hands bytes taken from the socket's Readable buffer to whoever reads it directly by now. */
function deliverTaken(socket: net.Socket, taken: Buffer[]): void {
  const cb = (socket as unknown as Record<symbol, unknown>)[kBufferCb!] as
    | ((n: number, buf: Buffer) => void)
    | undefined;
  if (socket.destroyed || !cb) return;
  for (const b of taken) cb(b.length, b);
}

const noop = (): void => {};

/**
 * Drops what a closed socket still holds of its users: listeners and the read callback. Node's
 * TCP handle object keeps its socket reachable until a full GC (a scavenge treats it as a root),
 * so everything those closures reach (a connection's codec, streams, headers, buffers) survived
 * every young-generation GC and was promoted, about 2.4 MB per scavenge at 10k connections/s.
 * Call it from a 'close' listener: the listeners of that emit still all run.
 */
export function releaseClosedSocket(socket: net.Socket): void {
  // Only plain sockets: a TLS socket's own listeners are none of Herald's business.
  if (socket.constructor !== net.Socket) return;
  socket.removeAllListeners();
  socket.on('error', noop);
  const s = socket as unknown as Record<symbol, unknown>;
  if (kBufferCb && s[kBufferCb]) s[kBufferCb] = noop;
}

/** A copy of a view that must outlive the read it came from. */
export function own(view: Buffer): Buffer {
  // allocUnsafe (from Node's pool for small sizes) + set: ~30% cheaper than Buffer.from(view).
  const out = Buffer.allocUnsafe(view.length);
  out.set(view);
  return out;
}
