// Looking at a connection's first bytes without consuming them (recv with
// MSG_PEEK), as Envoy's listener filters do. Node has no peek, so this calls
// libc through koffi. Peeked connections keep their native handle, which
// Node's TLS and HTTP/2 need to run at full speed; where peeking is not
// available, callers read the bytes and replay them instead.
import type net from 'node:net';
import { libc } from '../common/libc.js';

const MSG_PEEK = 0x2;
const MSG_DONTWAIT = 0x40;
/** Retries on the next loop turns before falling back to timers (each turn serves other I/O first). */
const MAX_IMMEDIATE_TRIES = Number(process.env.HERALD_PEEK_TRIES ?? 10);

/** HERALD_PEEK=0 turns peeking off (read-and-replay everywhere), for comparison. */
const PEEK_ENABLED = process.env.HERALD_PEEK !== '0';

type RecvFn = (fd: number, buf: Buffer, len: number, flags: number) => number;
let recv: RecvFn | null | undefined;

function loadRecv(): RecvFn | null {
  if (recv !== undefined) return recv;
  recv = null;
  if (process.platform !== 'linux') return recv;
  try {
    recv = libc().lib.func(
      'long recv(int fd, _Out_ uint8_t *buf, size_t len, int flags)',
    ) as unknown as RecvFn;
  } catch {
    recv = null;
  }
  return recv;
}

function fdOf(socket: net.Socket): number {
  const h = (socket as unknown as { _handle?: { fd?: number } })._handle;
  return typeof h?.fd === 'number' ? h.fd : -1;
}

/** Whether peek() works for this socket (Linux, koffi loadable, a real fd). */
export function canPeek(socket: net.Socket): boolean {
  return PEEK_ENABLED && loadRecv() !== null && fdOf(socket) >= 0;
}

export type PeekDecision = 'more' | 'done';

/**
 * Peeks at a paused socket until `decide` says it has seen enough, the peer
 * closes, or `max` bytes are available. Readiness cannot be observed without
 * reading, so it polls: a few times on the next turns of the event loop (the
 * first bytes of a client-first protocol are usually there already), then
 * with a backoff up to 20 ms. After `budgetMs` it gives up ('gave_up'): a
 * connection that stays silent that long is better served by reading (and
 * replaying) than by polling.
 */
export function peekUntil(
  socket: net.Socket,
  max: number,
  budgetMs: number,
  decide: (data: Buffer) => PeekDecision,
  done: (data: Buffer | undefined, outcome: 'decided' | 'closed' | 'gave_up') => void,
): void {
  const fn = loadRecv()!;
  const fd = fdOf(socket);
  const buf = Buffer.allocUnsafe(max);
  const deadline = Date.now() + budgetMs;
  let tries = 0;
  let delay = 1;
  let last = -1;
  const attempt = () => {
    if (socket.destroyed) return;
    const n = fn(fd, buf, max, MSG_PEEK | MSG_DONTWAIT);
    if (n === 0) return done(undefined, 'closed');
    if (n > 0 && n !== last) {
      last = n;
      const view = buf.subarray(0, n);
      if (decide(view) === 'done' || n >= max) return done(Buffer.from(view), 'decided');
    }
    if (Date.now() >= deadline) return done(undefined, 'gave_up');
    if (++tries <= MAX_IMMEDIATE_TRIES) setImmediate(attempt);
    else {
      setTimeout(attempt, delay);
      delay = Math.min(delay * 2, 20);
    }
  };
  attempt();
}
