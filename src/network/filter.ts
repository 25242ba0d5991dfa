// The network (L4) filter contract. Read filters run in config order when a
// connection is accepted; the last one is terminal (http_connection_manager,
// tcp_proxy) and owns the socket from then on.
import type net from 'node:net';

export enum NetworkFilterStatus {
  Continue = 0,
  StopIteration = 1,
}

export interface DownstreamConnection {
  readonly id: number;
  readonly socket: net.Socket;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
  /** True when a TLS transport socket terminated TLS on this connection. */
  readonly tls: boolean;
  /** SNI and ALPN, when known (tls_inspector or a TLS transport socket). */
  readonly serverName: string;
  readonly alpn: string;
  /** The listener's per_connection_buffer_limit_bytes. */
  readonly bufferLimit: number;
  /**
   * How the protocol on this connection winds down when the listener drains (HTTP/1: close after
   * the response in flight, HTTP/2: GOAWAY). Without one, the connection runs until it ends.
   * `closeIdle` is false for a connection accepted while draining: it is served once, then closed.
   */
  onDrain?: (drain: (closeIdle: boolean) => void) => void;
}

export interface NetworkFilter {
  onNewConnection(conn: DownstreamConnection): NetworkFilterStatus;
}

export interface NetworkFilterFactory {
  name: string;
  terminal: boolean;
  /** RDS route configurations this filter uses (a listener warms until they arrive). */
  routeConfigs?: import('../router/rds.js').RouteConfigHolder[];
  createFilter(): NetworkFilter;
}

/** The address fields of a connection, as stream and format contexts carry them. */
export function connectionAddresses(c: DownstreamConnection): {
  remoteAddress: string;
  remotePort: number;
  directRemoteAddress: string;
  directRemotePort: number;
  localAddress: string;
  localPort: number;
} {
  return {
    remoteAddress: c.remoteAddress,
    remotePort: c.remotePort,
    directRemoteAddress: c.remoteAddress,
    directRemotePort: c.remotePort,
    localAddress: c.localAddress,
    localPort: c.localPort,
  };
}
