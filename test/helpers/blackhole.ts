// A TCP listener that never accepts, with its accept queue filled: further
// connection attempts get no SYN-ACK and hang until the client's connect
// timeout, like an upstream whose SYNs are dropped. Herald's own listening
// socket (made through libc, never polled) with a backlog of 0 is exactly that.
import net from 'node:net';
import { makeListenSocket } from '../../src/listener/listen-socket.js';

export interface Blackhole {
  port: number;
  close(): void;
}

/** A listener on 127.0.0.1 with backlog 0 that is never accepted from, its queue filled. */
export async function startBlackhole(): Promise<Blackhole> {
  const sock = makeListenSocket('127.0.0.1', 0, false, 0);
  // Fill the accept queue: the first connections complete the handshake and sit there.
  const fillers: net.Socket[] = [];
  for (let i = 0; i < 3; i++) {
    const s = net.connect(sock.port, '127.0.0.1');
    s.on('error', () => {});
    fillers.push(s);
  }
  await new Promise((r) => setTimeout(r, 50));
  return {
    port: sock.port,
    close: () => {
      for (const s of fillers) s.destroy();
      sock.close();
    },
  };
}
