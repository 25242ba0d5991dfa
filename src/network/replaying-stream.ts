// A Duplex over a socket that first yields bytes already read from it. Node's
// HTTP/2 session gets one over a TLS socket made elsewhere, which it cannot
// drive by its handle. It costs a JavaScript hop per read, so it is used only
// there: listener filters put the bytes they read back with unshift (Node's
// TLS and HTTP/2 take a socket's buffered bytes first), and so does the HCM's
// h2c sniffing.
import type net from 'node:net';
import { Duplex } from 'node:stream';

/**
 * A stream over `socket` that first yields `head` (bytes already read while
 * sniffing), then the socket's own data. Writes go straight to the socket.
 */
export function replayingStream(socket: net.Socket, head: Buffer): Duplex {
  const d = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _enc, cb) {
      socket.write(chunk, cb);
    },
    final(cb) {
      socket.end();
      cb();
    },
    destroy(err, cb) {
      socket.destroy(err ?? undefined);
      cb(err);
    },
  });
  if (head.length) d.push(head);
  socket.on('data', (c: Buffer) => {
    if (!d.push(c)) socket.pause();
  });
  socket.once('end', () => d.push(null));
  socket.once('close', () => d.destroy());
  socket.on('error', (e) => d.destroy(e));
  // Address accessors some consumers read from the session's socket.
  for (const k of ['remoteAddress', 'remotePort', 'localAddress', 'localPort', 'remoteFamily'] as const)
    Object.defineProperty(d, k, { get: () => socket[k] });
  (d as Duplex & { setTimeout(ms: number, cb?: () => void): Duplex }).setTimeout = (ms, cb) => {
    socket.setTimeout(ms, cb);
    return d;
  };
  return d;
}
