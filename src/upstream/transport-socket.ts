// Upstream transport sockets: raw_buffer (plaintext) and tls
// (UpstreamTlsContext). Connections to hosts are made here for every pool
// and for tcp_proxy, so TLS is one code path.
import net from 'node:net';
import type tls from 'node:tls';
import { tlsModule } from '../common/lazy-modules.js';
import { applyTlsParams, dataSourcePath, type LoadedCertificate } from '../common/tls-params.js';
import { compileConfigSource } from '../config/config-source.js';
import type { Reader } from '../config/reader.js';
import { readDataSource } from '../router/route-config.js';
import type { SecretRegistry } from '../tls/secrets.js';
import type { Host } from './host.js';

const RAW_BUFFER = 'type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer';
const UPSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';

export interface UpstreamTlsConfig {
  options: tls.ConnectionOptions;
  /** Subject alternative names the server certificate must match (any of); empty = no SAN check. */
  sanMatchers: Array<(san: string) => boolean>;
  verify: 'chain' | 'chain_and_host' | 'none';
  /** The client certificate chain as loaded (for /certs and server.days_until_first_cert_expiring). */
  certificates: LoadedCertificate[];
  /** validation_context.trusted_ca as loaded, when set. */
  caCertificates: LoadedCertificate[];
  /** SDS secrets named but not arrived yet (connections fail until they are there). */
  pendingSecrets: Set<string>;
}

export function compileUpstreamTransport(r: Reader, secrets?: SecretRegistry): UpstreamTlsConfig | undefined {
  const name = r.str('name', '');
  const cfg = r.msg('typed_config');
  const url = cfg?.typeUrl;
  if (url === RAW_BUFFER || (!cfg && name === 'envoy.transport_sockets.raw_buffer')) return undefined;
  if (url !== UPSTREAM_TLS || !cfg)
    throw r.error(
      'typed_config',
      `transport socket '${name}' (${url ?? 'no typed_config'}) is not supported by Herald`,
    );
  const options: tls.ConnectionOptions = {};
  const sni = cfg.str('sni', '');
  if (sni) options.servername = sni;
  const common = cfg.msg('common_tls_context');
  let verify: UpstreamTlsConfig['verify'] = 'chain_and_host';
  const sanMatchers: UpstreamTlsConfig['sanMatchers'] = [];
  const certificates: LoadedCertificate[] = [];
  const caCertificates: LoadedCertificate[] = [];
  /** SDS secrets named but not arrived yet. */
  const pendingSecrets = new Set<string>();
  if (common) {
    const certs = common.list('tls_certificates');
    if (certs.length > 1)
      throw common.error('tls_certificates', 'at most one client certificate is supported');
    for (const c of certs) {
      const chain = c.msg('certificate_chain')!;
      options.cert = readDataSource(chain);
      certificates.push({ path: dataSourcePath(chain), pem: options.cert });
      options.key = readDataSource(c.msg('private_key')!);
      const pw = c.msg('password');
      if (pw) options.passphrase = readDataSource(pw).toString();
    }
    // SDS: the client certificate and/or the validation context by name, filled in (and replaced
    // on rotation) as they arrive; connections fail until then.
    const sdsCerts = common.list('tls_certificate_sds_secret_configs');
    if (sdsCerts.length > 1)
      throw common.error('tls_certificate_sds_secret_configs', 'at most one client certificate is supported');
    const sdsCert = sdsCerts[0];
    const sdsCa = common.msg('validation_context_sds_secret_config');
    if ((sdsCert || sdsCa) && !secrets)
      throw common.error('tls_certificate_sds_secret_configs', 'SDS is not available here');
    for (const [ref, kind] of [
      [sdsCert, 'cert'],
      [sdsCa, 'ca'],
    ] as const) {
      if (!ref) continue;
      const name = ref.str('name', '');
      const src = ref.msg('sds_config');
      pendingSecrets.add(name);
      secrets!.watch(name, src ? compileConfigSource(src) : undefined, () => {
        const s = secrets!.get(name);
        if (kind === 'cert' && s?.certificate) {
          options.cert = s.certificate.chain;
          options.key = s.certificate.key;
          if (s.certificate.password) options.passphrase = s.certificate.password;
          pendingSecrets.delete(name);
        } else if (kind === 'ca' && s?.validation) {
          if (s.validation.trustedCa) options.ca = s.validation.trustedCa;
          pendingSecrets.delete(name);
        }
      });
      if (kind === 'ca') verify = 'chain';
    }
    const alpn = common.strList('alpn_protocols');
    if (alpn.length) options.ALPNProtocols = alpn;
    applyTlsParams(common.msg('tls_params'), options);
    const vc = common.msg('validation_context');
    if (vc) {
      const ca = vc.msg('trusted_ca');
      if (ca) {
        options.ca = readDataSource(ca);
        caCertificates.push({ path: dataSourcePath(ca), pem: options.ca });
        // Envoy with a trusted CA checks the chain, and names only when SAN matchers are given.
        verify = 'chain';
      }
      if (vc.enum<string>('trust_chain_verification', 'VERIFY_TRUST_CHAIN') === 'ACCEPT_UNTRUSTED')
        verify = 'none';
      for (const m of vc.list('match_typed_subject_alt_names')) {
        const t = m.enum<string>('san_type', 'SAN_TYPE_UNSPECIFIED');
        if (t !== 'DNS' && t !== 'URI' && t !== 'IP_ADDRESS')
          throw m.error('san_type', `SAN type ${t} is not supported (DNS, URI, IP_ADDRESS are)`);
        sanMatchers.push(sanMatcher(m.msg('matcher')!, t));
      }
    }
  }
  return { options, sanMatchers, verify, certificates, caCertificates, pendingSecrets };
}

function sanMatcher(r: Reader, type: string): (san: string) => boolean {
  const prefix = type === 'DNS' ? 'DNS:' : type === 'URI' ? 'URI:' : 'IP Address:';
  const kind = r.oneof('exact', 'prefix', 'suffix', 'contains', 'safe_regex');
  const ignoreCase = r.bool('ignore_case');
  const norm = (s: string) => (ignoreCase ? s.toLowerCase() : s);
  if (kind === 'safe_regex') {
    const re = new RegExp(`^(?:${r.msg('safe_regex')!.str('regex', '')})$`);
    return (s) => s.startsWith(prefix) && re.test(s.slice(prefix.length));
  }
  const want = norm(r.str(kind ?? 'exact', ''));
  return (s) => {
    if (!s.startsWith(prefix)) return false;
    const v = norm(s.slice(prefix.length));
    if (kind === 'prefix') return v.startsWith(want);
    if (kind === 'suffix') return v.endsWith(want);
    if (kind === 'contains') return v.includes(want);
    return v === want;
  };
}

/** Opens a connection to a host: plain TCP, or TLS with the cluster's context. */
export function connectToHost(
  host: Host,
  tlsConfig: UpstreamTlsConfig | undefined,
  allowHalfOpen = false,
): { socket: net.Socket; readyEvent: string } {
  if (!tlsConfig) {
    return {
      socket: net.createConnection({ host: host.address, port: host.port, noDelay: true, allowHalfOpen }),
      readyEvent: 'connect',
    };
  }
  if (tlsConfig.pendingSecrets.size > 0) {
    // No certificate yet: fail like a connection that could not be made (Envoy: the cluster warms).
    const socket = new net.Socket();
    queueMicrotask(() =>
      socket.destroy(new Error(`TLS secret not ready: ${[...tlsConfig.pendingSecrets].join(', ')}`)),
    );
    return { socket, readyEvent: 'secureConnect' };
  }
  const o: tls.ConnectionOptions = {
    ...tlsConfig.options,
    host: host.address,
    port: host.port,
    rejectUnauthorized: tlsConfig.verify !== 'none',
  };
  // Without an explicit SNI, the endpoint's hostname (if a name) is sent, as auto_sni would.
  if (o.servername === undefined && host.hostname && net.isIP(host.hostname) === 0)
    o.servername = host.hostname;
  const matchers = tlsConfig.sanMatchers;
  o.checkServerIdentity = (hostname, cert) => {
    if (matchers.length) {
      const sans = (cert.subjectaltname ?? '').split(', ');
      if (!sans.some((s) => matchers.some((m) => m(s))))
        return new Error(
          `server certificate SANs (${cert.subjectaltname ?? 'none'}) match no configured subject_alt_name`,
        );
      return undefined;
    }
    if (tlsConfig.verify === 'chain_and_host')
      return tlsModule().checkServerIdentity(o.servername ?? hostname, cert);
    return undefined;
  };
  const socket = tlsModule().connect(o);
  socket.setNoDelay(true);
  return { socket, readyEvent: 'secureConnect' };
}
