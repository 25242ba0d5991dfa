// Downstream transport sockets: raw_buffer (plaintext) and tls
// (DownstreamTlsContext), terminated with Node's TLS over the accepted socket.
import type tls from 'node:tls';
import { tlsModule } from '../common/lazy-modules.js';
import { applyTlsParams, dataSourcePath, type LoadedCertificate } from '../common/tls-params.js';
import type { Reader } from '../config/reader.js';
import type { FactoryContext } from '../extensions/registry.js';
import { readDataSource } from '../router/route-config.js';

export const RAW_BUFFER_TYPE_URL =
  'type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer';
export const DOWNSTREAM_TLS_TYPE_URL =
  'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';

export interface DownstreamTransport {
  kind: 'tls';
  secureContext: tls.SecureContext;
  alpn: string[];
  requestCert: boolean;
  requireClientCert: boolean;
  /** Each tls_certificates chain as loaded (for /certs and server.days_until_first_cert_expiring). */
  certificates: LoadedCertificate[];
  /** validation_context.trusted_ca as loaded, when set. */
  caCertificates: LoadedCertificate[];
}

export function compileTransportSocket(r: Reader, _ctx: FactoryContext): DownstreamTransport | undefined {
  const name = r.str('name', '');
  const cfg = r.msg('typed_config');
  const url = cfg?.typeUrl;
  if (url === RAW_BUFFER_TYPE_URL || (!cfg && name === 'envoy.transport_sockets.raw_buffer'))
    return undefined;
  if (url !== DOWNSTREAM_TLS_TYPE_URL || !cfg)
    throw r.error(
      'typed_config',
      `transport socket '${name}' (${url ?? 'no typed_config'}) is not supported by Herald`,
    );

  const common = cfg.msg('common_tls_context');
  if (!common) throw cfg.error('common_tls_context', 'a certificate is required');
  const certs = common.list('tls_certificates');
  if (certs.length === 0) {
    const sds = common.has('tls_certificate_sds_secret_configs');
    throw common.error(
      sds ? 'tls_certificate_sds_secret_configs' : 'tls_certificates',
      sds ? 'SDS is not supported yet' : 'a certificate is required',
    );
  }
  const opts: tls.SecureContextOptions = { cert: [], key: [] };
  const certificates: LoadedCertificate[] = [];
  const caCertificates: LoadedCertificate[] = [];
  for (const c of certs) {
    const chain = c.msg('certificate_chain');
    const key = c.msg('private_key');
    if (!chain || !key)
      throw c.error(chain ? 'private_key' : 'certificate_chain', 'required field is missing');
    const pem = readDataSource(chain);
    (opts.cert as Buffer[]).push(pem);
    certificates.push({ path: dataSourcePath(chain), pem });
    const pw = c.msg('password');
    (opts.key as tls.KeyObject[]).push(
      pw
        ? { pem: readDataSource(key), passphrase: readDataSource(pw).toString() }
        : { pem: readDataSource(key) },
    );
  }
  const params = common.msg('tls_params');
  // Envoy's server defaults: TLS 1.2 to TLS 1.3.
  opts.minVersion = 'TLSv1.2';
  opts.maxVersion = 'TLSv1.3';
  applyTlsParams(params, opts);
  const vc = common.msg('validation_context');
  if (vc) {
    const ca = vc.msg('trusted_ca');
    if (ca) {
      opts.ca = readDataSource(ca);
      caCertificates.push({ path: dataSourcePath(ca), pem: opts.ca });
    }
  }
  const alpn = common.strList('alpn_protocols');
  const requireClientCert = cfg.has('require_client_certificate')
    ? cfg.bool('require_client_certificate')
    : false;
  let secureContext: tls.SecureContext;
  try {
    secureContext = tlsModule().createSecureContext(opts);
  } catch (e) {
    throw common.error('tls_certificates', `invalid certificate or key: ${(e as Error).message}`);
  }
  return {
    kind: 'tls',
    secureContext,
    alpn,
    requestCert: !!opts.ca,
    requireClientCert,
    certificates,
    caCertificates,
  };
}
