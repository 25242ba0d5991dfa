// envoy.filters.listener.http_inspector: tells plaintext HTTP/1.x ("http/1.1",
// "http/1.0") and HTTP/2 prior knowledge ("h2c") apart for the filter-chain
// match on application_protocols, without consuming bytes.

import type { ConnectionFacts } from '../../../listener/filter-chain-match.js';
import {
  InspectResult,
  type ListenerFilter,
  type ListenerFilterFactory,
} from '../../../listener/listener-filter.js';
import type { ExtensionFactory } from '../../registry.js';

export const HTTP_INSPECTOR_TYPE_URL =
  'type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector';

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const MAX = 64 * 1024;

class HttpInspector implements ListenerFilter {
  readonly maxBytes = MAX;
  inspect(data: Buffer, facts: ConnectionFacts): InspectResult {
    if (facts.transportProtocol === 'tls') return InspectResult.Done;
    const n = Math.min(data.length, H2_PREFACE.length);
    if (data.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) {
      if (data.length < H2_PREFACE.length) return InspectResult.NeedMoreData;
      facts.applicationProtocols = ['h2c'];
      return InspectResult.Done;
    }
    const eol = data.indexOf('\r\n');
    if (eol < 0) {
      if (data.length >= MAX || !/^[A-Z]*( |$)/.test(data.toString('latin1', 0, Math.min(data.length, 16))))
        return InspectResult.Done;
      return InspectResult.NeedMoreData;
    }
    const line = data.toString('latin1', 0, eol);
    const m = /^[A-Z]+ \S+ HTTP\/1\.([01])$/.exec(line);
    if (m) facts.applicationProtocols = [m[1] === '0' ? 'http/1.0' : 'http/1.1'];
    return InspectResult.Done;
  }
}

export const httpInspectorFactory: ExtensionFactory<ListenerFilterFactory> = {
  name: 'envoy.filters.listener.http_inspector',
  typeUrls: [HTTP_INSPECTOR_TYPE_URL],
  category: 'listener_filter',
  create() {
    return { name: 'envoy.filters.listener.http_inspector', createFilter: () => new HttpInspector() };
  },
};
