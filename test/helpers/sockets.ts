// The kernel's view of TCP sockets (/proc/net/tcp, tcp6): what a leak looks
// like from outside. A socket Herald keeps after its client closed sits in
// CLOSE-WAIT on Herald's port; one Herald closed first is gone or in TIME-WAIT.
import fs from 'node:fs';

export const TcpState = {
  ESTABLISHED: 1,
  SYN_SENT: 2,
  SYN_RECV: 3,
  FIN_WAIT1: 4,
  FIN_WAIT2: 5,
  TIME_WAIT: 6,
  CLOSE: 7,
  CLOSE_WAIT: 8,
  LAST_ACK: 9,
  LISTEN: 10,
  CLOSING: 11,
} as const;

export interface TcpSocket {
  localPort: number;
  remotePort: number;
  state: number;
}

function read(file: string): TcpSocket[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'latin1');
  } catch {
    return [];
  }
  const out: TcpSocket[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4) continue;
    const local = f[1]!.split(':');
    const remote = f[2]!.split(':');
    out.push({
      localPort: Number.parseInt(local[local.length - 1]!, 16),
      remotePort: Number.parseInt(remote[remote.length - 1]!, 16),
      state: Number.parseInt(f[3]!, 16),
    });
  }
  return out;
}

/** Every TCP socket of this network namespace (IPv4 and IPv6). */
export function tcpSockets(): TcpSocket[] {
  return [...read('/proc/net/tcp'), ...read('/proc/net/tcp6')];
}

/** Sockets on the server side of `port` (local port = port), listening socket excluded. */
export function serverSockets(port: number, state?: number): TcpSocket[] {
  return tcpSockets().filter(
    (s) => s.localPort === port && s.state !== TcpState.LISTEN && (state === undefined || s.state === state),
  );
}

/** Server-side sockets of `port` whose client has closed and that Herald still holds. */
export function closeWait(port: number): TcpSocket[] {
  return serverSockets(port, TcpState.CLOSE_WAIT);
}

/** Waits (bounded) until no server socket on `port` is in CLOSE-WAIT; returns those left. */
export async function settleCloseWait(ports: number[], timeoutMs: number): Promise<TcpSocket[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = ports.flatMap((p) => closeWait(p));
    if (left.length === 0 || Date.now() >= deadline) return left;
    await new Promise((r) => setTimeout(r, 25));
  }
}
