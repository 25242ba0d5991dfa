// TCP health checks (HealthCheck.tcp_health_check), as Envoy's TcpHealthCheckerImpl:
// with nothing to receive, a connection that opens passes (and is closed); otherwise the
// `send` bytes are written and the check passes once every `receive` block has arrived,
// in order. A connection closed or refused is a network failure, counted against
// unhealthy_threshold.
import type net from 'node:net';
import type { Host } from '../host.js';
import { connectToHost } from '../transport-socket.js';
import { ActiveHealthCheckSession, HealthChecker } from './base.js';
import type { TcpCheckConfig } from './config.js';
import { payloadMatches } from './payload.js';

export class TcpHealthChecker extends HealthChecker {
  get tcp(): TcpCheckConfig {
    return this.config.checker as TcpCheckConfig;
  }

  protected makeSession(host: Host): ActiveHealthCheckSession {
    return new TcpSession(this, host);
  }
}

class TcpSession extends ActiveHealthCheckSession {
  private socket: net.Socket | undefined;
  private received = Buffer.alloc(0);
  private current = 0;

  constructor(
    private readonly checker: TcpHealthChecker,
    host: Host,
  ) {
    super(checker, host);
  }

  protected onInterval(id: number): void {
    const c = this.checker.tcp;
    this.current = id;
    this.received = Buffer.alloc(0);
    if (!this.socket) {
      const { socket, readyEvent } = connectToHost(this.host, this.checker.cluster.config.tls);
      this.socket = socket;
      socket.unref();
      socket.on(readyEvent, () => {
        if (c.receive.length === 0) {
          // A connect-only check: the open connection is the answer.
          this.close(socket);
          this.succeed(this.current);
        }
      });
      socket.on('data', (chunk: Buffer) => {
        this.received = Buffer.concat([this.received, chunk]);
        if (c.receive.length > 0 && payloadMatches(c.receive, this.received)) {
          this.received = Buffer.alloc(0);
          if (!this.checker.config.reuseConnection) this.close(socket);
          this.succeed(this.current);
        }
      });
      socket.on('error', () => {});
      socket.on('close', () => {
        if (this.socket !== socket) return;
        this.socket = undefined;
        this.fail(this.current, 'NETWORK', 'connection closed');
      });
    }
    if (c.send.length > 0) this.socket.write(c.send);
  }

  private close(socket: net.Socket): void {
    if (this.socket === socket) this.socket = undefined;
    socket.destroy();
  }

  protected onTimeout(): void {
    if (this.socket) this.close(this.socket);
  }

  protected onDestroy(): void {
    this.onTimeout();
  }
}
