// A TCP listener that never accepts, with its accept queue filled: further
// connection attempts get no SYN-ACK and hang until the client's connect
// timeout, like an upstream whose SYNs are dropped. Node always accepts, so
// the socket is made through libc (koffi, which Herald already depends on).
import { createRequire } from 'node:module';
import net from 'node:net';

interface Libc {
  socket(domain: number, type: number, proto: number): number;
  bind(fd: number, addr: Buffer, len: number): number;
  listen(fd: number, backlog: number): number;
  getsockname(fd: number, addr: Buffer, len: Buffer): number;
  close(fd: number): number;
}

let libc: Libc | undefined;
function load(): Libc {
  if (libc) return libc;
  const require = createRequire(import.meta.url);
  const koffi = require('koffi') as typeof import('koffi');
  const lib = koffi.load('libc.so.6');
  libc = {
    socket: lib.func('int socket(int, int, int)') as Libc['socket'],
    bind: lib.func('int bind(int, const uint8_t *, uint32_t)') as Libc['bind'],
    listen: lib.func('int listen(int, int)') as Libc['listen'],
    getsockname: lib.func(
      'int getsockname(int, _Inout_ uint8_t *, _Inout_ uint8_t *)',
    ) as Libc['getsockname'],
    close: lib.func('int close(int)') as Libc['close'],
  };
  return libc;
}

export interface Blackhole {
  port: number;
  close(): void;
}

/** A listener on 127.0.0.1 with backlog 0 that is never accepted from, its queue filled. */
export async function startBlackhole(): Promise<Blackhole> {
  const c = load();
  const fd = c.socket(2 /* AF_INET */, 1 /* SOCK_STREAM */, 0);
  if (fd < 0) throw new Error('socket() failed');
  const addr = Buffer.alloc(16);
  addr.writeUInt16LE(2, 0); // sin_family
  addr.writeUInt16BE(0, 2); // any port
  addr.set([127, 0, 0, 1], 4);
  if (c.bind(fd, addr, 16) !== 0 || c.listen(fd, 0) !== 0) {
    c.close(fd);
    throw new Error('bind/listen failed');
  }
  const len = Buffer.alloc(4);
  len.writeUInt32LE(16);
  c.getsockname(fd, addr, len);
  const port = addr.readUInt16BE(2);
  // Fill the accept queue: the first connections complete the handshake and sit there.
  const fillers: net.Socket[] = [];
  for (let i = 0; i < 3; i++) {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    fillers.push(s);
  }
  await new Promise((r) => setTimeout(r, 50));
  return {
    port,
    close: () => {
      for (const s of fillers) s.destroy();
      c.close(fd);
    },
  };
}
