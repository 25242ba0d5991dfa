// envoy.filters.listener.tls_inspector: reads the TLS ClientHello (without
// consuming it) for the filter-chain match: transport protocol "tls", SNI
// (server_names) and ALPN (application_protocols).

import type { ConnectionFacts } from '../../../listener/filter-chain-match.js';
import {
  InspectResult,
  type ListenerFilter,
  type ListenerFilterFactory,
} from '../../../listener/listener-filter.js';
import type { ExtensionFactory } from '../../registry.js';

export const TLS_INSPECTOR_TYPE_URL =
  'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector';

/** Envoy's default maximum ClientHello it reads. */
const MAX_CLIENT_HELLO = 16 * 1024;

export interface ClientHello {
  serverName: string;
  alpn: string[];
}

/**
 * Parses a ClientHello from the start of a TLS stream. Returns 'more' when
 * the bytes so far are a valid prefix, 'not_tls' when they are not TLS.
 */
export function parseClientHello(buf: Buffer): ClientHello | 'more' | 'not_tls' {
  // Reassemble the handshake message from one or more TLS records.
  const hs: Buffer[] = [];
  let hsLen = 0;
  let off = 0;
  let needed = -1;
  while (true) {
    if (buf.length < off + 5)
      return buf.length === 0 || (off === 0 && buf[0] === 0x16) || off > 0 ? 'more' : 'not_tls';
    if (buf[off] !== 0x16 || buf[off + 1] !== 0x03) return 'not_tls';
    const len = buf.readUInt16BE(off + 3);
    if (buf.length < off + 5 + len) return 'more';
    const frag = buf.subarray(off + 5, off + 5 + len);
    hs.push(frag);
    hsLen += frag.length;
    off += 5 + len;
    if (needed < 0 && hsLen >= 4) {
      const first = Buffer.concat(hs);
      if (first[0] !== 0x01) return 'not_tls'; // not a ClientHello
      needed = 4 + first.readUIntBE(1, 3);
    }
    if (needed >= 0 && hsLen >= needed) break;
  }
  const m = Buffer.concat(hs).subarray(4, needed);
  const out: ClientHello = { serverName: '', alpn: [] };
  try {
    let p = 2 + 32; // version, random
    p += 1 + m[p]!; // session id
    p += 2 + m.readUInt16BE(p); // cipher suites
    p += 1 + m[p]!; // compression methods
    if (p + 2 > m.length) return out;
    const extEnd = p + 2 + m.readUInt16BE(p);
    p += 2;
    while (p + 4 <= extEnd) {
      const type = m.readUInt16BE(p);
      const len = m.readUInt16BE(p + 2);
      const body = m.subarray(p + 4, p + 4 + len);
      p += 4 + len;
      if (type === 0 && body.length >= 5 && body[2] === 0) {
        const n = body.readUInt16BE(3);
        out.serverName = body.toString('latin1', 5, 5 + n).toLowerCase();
      } else if (type === 16 && body.length >= 2) {
        let q = 2;
        while (q < body.length) {
          const n = body[q]!;
          out.alpn.push(body.toString('latin1', q + 1, q + 1 + n));
          q += 1 + n;
        }
      }
    }
  } catch {
    // A truncated extension block: use what was read.
  }
  return out;
}

class TlsInspector implements ListenerFilter {
  readonly maxBytes = MAX_CLIENT_HELLO;
  inspect(data: Buffer, facts: ConnectionFacts): InspectResult {
    const r = parseClientHello(data);
    if (r === 'more')
      return data.length >= MAX_CLIENT_HELLO ? InspectResult.Done : InspectResult.NeedMoreData;
    if (r === 'not_tls') return InspectResult.Done;
    facts.transportProtocol = 'tls';
    facts.serverName = r.serverName;
    facts.applicationProtocols = r.alpn;
    return InspectResult.Done;
  }
}

export const tlsInspectorFactory: ExtensionFactory<ListenerFilterFactory> = {
  name: 'envoy.filters.listener.tls_inspector',
  typeUrls: [TLS_INSPECTOR_TYPE_URL],
  category: 'listener_filter',
  create() {
    return { name: 'envoy.filters.listener.tls_inspector', createFilter: () => new TlsInspector() };
  },
};
