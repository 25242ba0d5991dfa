// core.v3.Address -> a host/port pair. Only socket addresses over TCP for now.
import net from 'node:net';
import type { Reader } from '../config/reader.js';

export interface SocketAddress {
  /** IP literal or DNS name, as written. */
  host: string;
  port: number;
  /** For listeners: accept IPv4 on an IPv6 wildcard socket. */
  ipv4Compat: boolean;
}

export function compileAddress(r: Reader): SocketAddress {
  const sa = r.msg('socket_address');
  if (!sa) {
    const kind = r.oneof('pipe', 'envoy_internal_address');
    throw r.error(kind, 'only socket_address is supported');
  }
  if (sa.enum('protocol', 'TCP') !== 'TCP') throw sa.error('protocol', 'only TCP is supported');
  const host = sa.str('address', '');
  const port = sa.num('port_value');
  if (port === undefined) {
    if (sa.has('named_port')) throw sa.error('named_port', 'named ports are not supported; use port_value');
  }
  const ipv4Compat = sa.bool('ipv4_compat');
  sa.ignore('resolver_name'); // rejected below when set, kept for the message
  if (sa.value.resolver_name) throw sa.error('resolver_name', 'custom resolvers are not supported');
  return { host, port: port ?? 0, ipv4Compat };
}

export function formatAddress(host: string, port: number): string {
  return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Parses "1.2.3.4:80" or "[::1]:80". */
export function splitHostPort(s: string): { host: string; port: number } | undefined {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(s) ?? /^([^:]+):(\d+)$/.exec(s);
  return m ? { host: m[1]!, port: Number(m[2]) } : undefined;
}
