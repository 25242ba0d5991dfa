// A recording upstream for the hostile-input tests: every byte Herald sends is kept per
// connection and read with the strict reference framing (strict-http1.ts), each complete request
// answered 200 with "<method> <path>". Unlike a lenient test parser, it cannot be talked into a
// loop by odd framing (a repeated content-length, say): malformed bytes are recorded as such and
// the connection is closed.
import net from 'node:net';
import { type Message, strictParse } from './strict-http1.js';

export interface Seen extends Message {
  /** Index of the upstream connection (accept order). */
  conn: number;
}

export interface RecordingUpstream {
  port: number;
  /** Complete requests, in arrival order. */
  requests: Seen[];
  /** Bytes received, per connection. */
  received: Buffer[];
  /** Connections whose bytes the strict reading refused, with its reason. */
  malformed: { conn: number; reason: string }[];
  close(): Promise<void>;
}

export async function startRecordingUpstream(): Promise<RecordingUpstream> {
  const requests: Seen[] = [];
  const received: Buffer[] = [];
  const malformed: { conn: number; reason: string }[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    const conn = received.length;
    received.push(Buffer.alloc(0));
    sockets.add(socket);
    let answered = 0;
    socket.on('error', () => {});
    socket.on('end', () => socket.end());
    socket.on('close', () => sockets.delete(socket));
    socket.on('data', (c: Buffer) => {
      received[conn] = Buffer.concat([received[conn]!, c]);
      // Re-read from the start (inputs are small): complete messages past those answered are new.
      const ref = strictParse(received[conn]!);
      for (; answered < ref.messages.length; answered++) {
        const m = ref.messages[answered]!;
        requests.push({ ...m, conn });
        const body = `${m.method} ${m.path}`;
        socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      }
      if (ref.outcome === 'error' || ref.outcome === 'unmodelled') {
        malformed.push({ conn, reason: ref.reason ?? ref.outcome });
        socket.destroy();
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    requests,
    received,
    malformed,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
