// What the kernel holds unread for a socket, asked without reading it
// (recv with MSG_PEEK | MSG_DONTWAIT, through koffi). Used where Node has
// stopped reading a socket on its own and says nothing: an HTTP/2 session
// that nghttp2 ended (see http/conn-manager.ts, H2Session).
import type { Duplex } from 'node:stream';
import { libc } from '../common/libc.js';

export enum PendingInput {
  /** Nothing waiting. */
  None,
  /** Bytes waiting to be read. */
  Data,
  /** The peer closed (FIN read next) or the socket failed. */
  Closed,
  /** Cannot tell (no fd, or libc unavailable). */
  Unknown,
}

const MSG_PEEK = 0x2;
const MSG_DONTWAIT = 0x40;
const EAGAIN = 11;
const EINTR = 4;

const SIOCOUTQ = 0x5411; // TIOCOUTQ: bytes in the socket's send queue not yet acknowledged

let recv: ((fd: number, buf: Buffer, len: number, flags: number) => number) | null | undefined;
let ioctl: ((fd: number, req: number, out: Int32Array) => number) | undefined;
const outq = new Int32Array(1);
let errno: (() => number) | undefined;
const one = Buffer.alloc(1);

function load(): boolean {
  if (recv !== undefined) return recv !== null;
  try {
    const { koffi, lib } = libc();
    recv = lib.func('long recv(int fd, _Out_ uint8_t *buf, size_t len, int flags)') as unknown as typeof recv;
    ioctl = lib.func('int ioctl(int fd, unsigned long req, _Out_ int *out)') as unknown as typeof ioctl;
    errno = () => koffi.errno();
  } catch {
    recv = null;
  }
  return recv !== null;
}

/** The file descriptor under a socket (a TLS socket's is its TCP socket's), or -1. */
export function socketFd(socket: Duplex): number {
  const s = socket as unknown as { _handle?: { fd?: number }; _parent?: { _handle?: { fd?: number } } };
  const fd = s._handle?.fd ?? s._parent?._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : -1;
}

export function pendingInput(fd: number): PendingInput {
  if (fd < 0 || !load()) return PendingInput.Unknown;
  const n = recv!(fd, one, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) return PendingInput.Data;
  if (n === 0) return PendingInput.Closed;
  const e = errno!();
  return e === EAGAIN || e === EINTR ? PendingInput.None : PendingInput.Closed;
}

/**
 * Bytes the kernel still holds to send on the socket (SIOCOUTQ), or -1 when unknown. A socket
 * whose peer does not read keeps some; one whose last write has gone out keeps none.
 */
export function unsentOutput(fd: number): number {
  if (fd < 0 || !load()) return -1;
  return ioctl!(fd, SIOCOUTQ, outq) === 0 ? outq[0]! : -1;
}
