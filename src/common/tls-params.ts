// extensions.transport_sockets.tls.v3.TlsParameters, shared by downstream and
// upstream TLS contexts.
import type tls from 'node:tls';
import type { Reader } from '../config/reader.js';

const TLS_VERSIONS: Record<string, tls.SecureVersion | undefined> = {
  TLS_AUTO: undefined,
  TLSv1_0: 'TLSv1',
  TLSv1_1: 'TLSv1.1',
  TLSv1_2: 'TLSv1.2',
  TLSv1_3: 'TLSv1.3',
};

/** Applies tls_params (versions, cipher suites, ECDH curves) to Node TLS options. */
export function applyTlsParams(params: Reader | undefined, o: tls.SecureContextOptions): void {
  if (!params) return;
  const min = TLS_VERSIONS[params.enum('tls_minimum_protocol_version', 'TLS_AUTO')];
  const max = TLS_VERSIONS[params.enum('tls_maximum_protocol_version', 'TLS_AUTO')];
  if (min) o.minVersion = min;
  if (max) o.maxVersion = max;
  const ciphers = params.strList('cipher_suites');
  if (ciphers.length) o.ciphers = ciphers.join(':');
  const curves = params.strList('ecdh_curves');
  if (curves.length) o.ecdhCurve = curves.join(':');
}

/** A certificate (or bundle) as loaded, for /certs: its file, or `<inline>`, and its PEM bytes. */
export interface LoadedCertificate {
  path: string;
  pem: Buffer;
}

/** Where a config.core.v3.DataSource came from, as Envoy's /certs names it. */
export function dataSourcePath(r: Reader): string {
  return r.oneof('filename', 'inline_bytes', 'inline_string', 'environment_variable') === 'filename'
    ? r.str('filename', '')
    : '<inline>';
}
