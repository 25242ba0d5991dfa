// Downstream transport sockets: raw_buffer (plaintext) and tls
// (DownstreamTlsContext), terminated with Node's TLS over the accepted socket.
import type tls from 'node:tls';
import { tlsModule } from '../common/lazy-modules.js';
import { logger } from '../common/logger.js';
import { applyTlsParams, dataSourcePath, type LoadedCertificate } from '../common/tls-params.js';
import { compileConfigSource } from '../config/config-source.js';
import type { Reader } from '../config/reader.js';
import type { FactoryContext } from '../extensions/registry.js';
import type { ConfigSourceConfig } from '../router/rds.js';
import { readDataSource } from '../router/route-config.js';

const log = logger('tls');

export const RAW_BUFFER_TYPE_URL =
  'type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer';
export const DOWNSTREAM_TLS_TYPE_URL =
  'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';

export interface DownstreamTransport {
  kind: 'tls';
  /** Undefined while an SDS secret it names has not arrived (connections are then refused). */
  secureContext: tls.SecureContext | undefined;
  alpn: string[];
  requestCert: boolean;
  requireClientCert: boolean;
  /** Each tls_certificates chain as loaded (for /certs and server.days_until_first_cert_expiring). */
  certificates: LoadedCertificate[];
  /** validation_context.trusted_ca as loaded, when set. */
  caCertificates: LoadedCertificate[];
  /** With SDS: resolves once the secrets are there (a listener warms until then). */
  ready?: Promise<void>;
  /** The longest initial_fetch_timeout of its SDS sources (how long a listener warms). */
  initialFetchTimeoutMs?: number;
}

interface SdsRef {
  name: string;
  source: ConfigSourceConfig | undefined;
}

function sdsRef(r: Reader): SdsRef {
  const name = r.str('name', '');
  const src = r.msg('sds_config');
  return { name, source: src ? compileConfigSource(src) : undefined };
}

export function compileTransportSocket(r: Reader, ctx: FactoryContext): DownstreamTransport | undefined {
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
  // SDS: certificates (and the validation context) named, delivered later, and replaced on rotation.
  const sdsCerts = common.list('tls_certificate_sds_secret_configs').map(sdsRef);
  if (certs.length === 0 && sdsCerts.length === 0)
    throw common.error('tls_certificates', 'a certificate is required');
  const base: tls.SecureContextOptions = {};
  const staticCerts: Buffer[] = [];
  const staticKeys: tls.KeyObject[] = [];
  const certificates: LoadedCertificate[] = [];
  const caCertificates: LoadedCertificate[] = [];
  for (const c of certs) {
    const chain = c.msg('certificate_chain');
    const key = c.msg('private_key');
    if (!chain || !key)
      throw c.error(chain ? 'private_key' : 'certificate_chain', 'required field is missing');
    const pem = readDataSource(chain);
    staticCerts.push(pem);
    certificates.push({ path: dataSourcePath(chain), pem });
    const pw = c.msg('password');
    staticKeys.push(
      pw
        ? { pem: readDataSource(key), passphrase: readDataSource(pw).toString() }
        : { pem: readDataSource(key) },
    );
  }
  const params = common.msg('tls_params');
  // Envoy's server defaults: TLS 1.2 to TLS 1.3.
  base.minVersion = 'TLSv1.2';
  base.maxVersion = 'TLSv1.3';
  applyTlsParams(params, base);
  let staticCa: Buffer | undefined;
  const vc = common.msg('validation_context');
  if (vc) {
    const ca = vc.msg('trusted_ca');
    if (ca) {
      staticCa = readDataSource(ca);
      caCertificates.push({ path: dataSourcePath(ca), pem: staticCa });
    }
  }
  const sdsCa = common.has('validation_context_sds_secret_config')
    ? sdsRef(common.msg('validation_context_sds_secret_config')!)
    : undefined;
  const alpn = common.strList('alpn_protocols');
  const requireClientCert = cfg.has('require_client_certificate')
    ? cfg.bool('require_client_certificate')
    : false;
  const t: DownstreamTransport = {
    kind: 'tls',
    secureContext: undefined,
    alpn,
    requestCert: !!staticCa || !!sdsCa,
    requireClientCert,
    certificates,
    caCertificates,
  };
  const secrets = ctx.server.secrets;
  /** (Re)builds the context from the static parts and the secrets in force; undefined until all are there. */
  const build = (): tls.SecureContext | undefined => {
    const opts: tls.SecureContextOptions = { ...base, cert: [...staticCerts], key: [...staticKeys] };
    const loaded = [...certificates];
    for (const ref of sdsCerts) {
      const s = secrets.get(ref.name)?.certificate;
      if (!s) return undefined;
      (opts.cert as Buffer[]).push(s.chain);
      (opts.key as tls.KeyObject[]).push(
        s.password ? { pem: s.key, passphrase: s.password } : { pem: s.key },
      );
      loaded.push({ path: `<sds:${ref.name}>`, pem: s.chain });
    }
    let ca = staticCa;
    const cas = [...caCertificates];
    if (sdsCa) {
      const v = secrets.get(sdsCa.name)?.validation;
      if (!v) return undefined;
      if (v.trustedCa) {
        ca = v.trustedCa;
        cas.push({ path: `<sds:${sdsCa.name}>`, pem: v.trustedCa });
      }
    }
    if (ca) opts.ca = ca;
    const sc = tlsModule().createSecureContext(opts);
    t.certificates = loaded;
    t.caCertificates = cas;
    return sc;
  };
  if (sdsCerts.length === 0 && !sdsCa) {
    try {
      t.secureContext = build();
    } catch (e) {
      throw common.error('tls_certificates', `invalid certificate or key: ${(e as Error).message}`);
    }
    return t;
  }
  let markReady!: () => void;
  t.ready = new Promise((r) => {
    markReady = r;
  });
  t.initialFetchTimeoutMs = Math.max(
    0,
    ...[...sdsCerts, ...(sdsCa ? [sdsCa] : [])].map((x) => x.source?.initialFetchTimeoutMs ?? 0),
  );
  const rebuild = () => {
    try {
      const sc = build();
      if (sc) {
        t.secureContext = sc;
        markReady();
      }
    } catch (e) {
      // A secret that does not make a context is not used; the last good one stays.
      log.error(`TLS secret rejected: ${(e as Error).message}`);
    }
  };
  for (const ref of [...sdsCerts, ...(sdsCa ? [sdsCa] : [])]) secrets.watch(ref.name, ref.source, rebuild);
  rebuild();
  return t;
}
