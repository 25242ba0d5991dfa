// Listening sockets made by Herald's main process for its workers. The main
// process binds (so a port 0 is chosen once, and a worker that is replaced
// finds the same socket) but never accepts: the fd is handed to the worker
// processes, which accept on it ("the kernel's choice"), or the main process
// accepts and passes each connection on (exact balance). Node cannot make a
// listening socket without polling it, so it is made through libc (koffi).

import net from 'node:net';
import { libc as loadLibc } from '../common/libc.js';

interface Libc {
  socket(domain: number, type: number, proto: number): number;
  setsockopt(fd: number, level: number, name: number, val: Buffer, len: number): number;
  bind(fd: number, addr: Buffer, len: number): number;
  listen(fd: number, backlog: number): number;
  getsockname(fd: number, addr: Buffer, len: Buffer): number;
  close(fd: number): number;
}

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_STREAM = 1;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const IPPROTO_IPV6 = 41;
const IPV6_V6ONLY = 26;

let libc: Libc | undefined;
function load(): Libc {
  if (libc) return libc;
  const { lib } = loadLibc();
  libc = {
    socket: lib.func('int socket(int, int, int)') as Libc['socket'],
    setsockopt: lib.func('int setsockopt(int, int, int, const uint8_t *, uint32_t)') as Libc['setsockopt'],
    bind: lib.func('int bind(int, const uint8_t *, uint32_t)') as Libc['bind'],
    listen: lib.func('int listen(int, int)') as Libc['listen'],
    getsockname: lib.func(
      'int getsockname(int, _Inout_ uint8_t *, _Inout_ uint8_t *)',
    ) as Libc['getsockname'],
    close: lib.func('int close(int)') as Libc['close'],
  };
  return libc;
}

export interface ListenSocket {
  fd: number;
  port: number;
  close(): void;
}

function sockaddr(host: string, port: number): { family: number; buf: Buffer } {
  if (net.isIPv6(host)) {
    const buf = Buffer.alloc(28);
    buf.writeUInt16LE(AF_INET6, 0);
    buf.writeUInt16BE(port, 2);
    // Expand the address into 16 bytes.
    const [head, tail] = host.includes('::') ? host.split('::') : [host, undefined];
    const h = head ? head.split(':') : [];
    const t = tail ? tail.split(':') : [];
    const last = t.length ? t : h;
    const v4 = last[last.length - 1] ?? '';
    if (v4.includes('.')) {
      // An embedded IPv4 address (::ffff:1.2.3.4) is the last two groups.
      const b = v4.split('.').map(Number);
      last.splice(
        last.length - 1,
        1,
        ((b[0]! << 8) | b[1]!).toString(16),
        ((b[2]! << 8) | b[3]!).toString(16),
      );
    }
    const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
    for (let i = 0; i < 8; i++) buf.writeUInt16BE(Number.parseInt(groups[i] || '0', 16), 8 + i * 2);
    return { family: AF_INET6, buf };
  }
  const buf = Buffer.alloc(16);
  buf.writeUInt16LE(AF_INET, 0);
  buf.writeUInt16BE(port, 2);
  buf.set(
    host.split('.').map((x) => Number(x)),
    4,
  );
  return { family: AF_INET, buf };
}

/** A bound, listening TCP socket that nothing in this process accepts on. */
export function makeListenSocket(
  host: string,
  port: number,
  ipv6Only: boolean,
  backlog = 1024,
): ListenSocket {
  const c = load();
  const { family, buf } = sockaddr(host, port);
  const fd = c.socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new Error('socket() failed');
  const one = Buffer.alloc(4);
  one.writeInt32LE(1);
  c.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, one, 4);
  if (family === AF_INET6) {
    const v = Buffer.alloc(4);
    v.writeInt32LE(ipv6Only ? 1 : 0);
    c.setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, v, 4);
  }
  if (c.bind(fd, buf, buf.length) !== 0) {
    c.close(fd);
    throw new Error(`cannot bind ${host}:${port} (address in use or not available)`);
  }
  if (c.listen(fd, backlog) !== 0) {
    c.close(fd);
    throw new Error(`cannot listen on ${host}:${port}`);
  }
  const out = Buffer.alloc(28);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(28);
  c.getsockname(fd, out, len);
  let closed = false;
  return {
    fd,
    port: out.readUInt16BE(2),
    close: () => {
      if (!closed) c.close(fd);
      closed = true;
    },
  };
}
