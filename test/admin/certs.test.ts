// /certs and server.days_until_first_cert_expiring: the certificates of a listener's
// DownstreamTlsContext and a cluster's UpstreamTlsContext, loaded from files, over real sockets.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { certificatesJson, daysUntilFirstCertExpiring, parseSubjectAltNames } from '../../src/admin/certs.js';
import { selfSignedCert } from '../helpers/data-path.js';
import {
  adminGet,
  httpBootstrap,
  type Running,
  startHerald,
  stat,
  staticCluster,
} from '../helpers/harness.js';

interface Details {
  path: string;
  serial_number: string;
  subject_alt_names: Array<Record<string, string>>;
  days_until_expiration: string;
  valid_from: string;
  expiration_time: string;
  ocsp_details?: unknown;
}
interface CertsBody {
  certificates: Array<{ ca_cert: Details[]; cert_chain: Details[] }>;
}

const DAY_MS = 86_400_000;

describe('/certs with a TLS listener and a TLS cluster', () => {
  const listenerCert = selfSignedCert({ days: 30, san: 'DNS:herald.test,IP:127.0.0.1' });
  const caCert = selfSignedCert({ days: 10, san: 'DNS:localhost,URI:spiffe://herald/upstream' });
  let dir: string;
  let certPath: string;
  let keyPath: string;
  let caPath: string;
  let h: Running | undefined;
  before(async () => {
    if (!listenerCert || !caCert) return;
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-certs-'));
    certPath = path.join(dir, 'listener.pem');
    keyPath = path.join(dir, 'listener.key');
    caPath = path.join(dir, 'ca.pem');
    fs.writeFileSync(certPath, listenerCert.cert);
    fs.writeFileSync(keyPath, listenerCert.key);
    fs.writeFileSync(caPath, caCert.cert);
    h = await startHerald(`
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
static_resources:
  listeners:
  - name: tls
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificates:
            - certificate_chain: { filename: ${certPath} }
              private_key: { filename: ${keyPath} }
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: tls
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: / }
                direct_response: { status: 200, body: { inline_string: ok } }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
${staticCluster(
  'secure',
  [1],
  `transport_socket:
  name: envoy.transport_sockets.tls
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
    common_tls_context:
      validation_context:
        trusted_ca: { filename: ${caPath} }`,
)
  .split('\n')
  .map((l) => `  ${l}`)
  .join('\n')}
`);
  });
  after(async () => {
    await h?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const certs = async (): Promise<{ raw: string; body: CertsBody }> => {
    const r = await adminGet(h!.adminPort, '/certs');
    assert.equal(r.status, 200);
    assert.match(String(r.headers['content-type']), /application\/json/);
    return { raw: r.body, body: JSON.parse(r.body) as CertsBody };
  };

  const expectDetails = (d: Details, file: string, pem: string) => {
    const x = new X509Certificate(pem);
    const days = Math.floor((Date.parse(x.validTo) - Date.now()) / DAY_MS);
    assert.equal(d.path, file);
    assert.equal(d.serial_number, x.serialNumber.toLowerCase());
    assert.match(d.serial_number, /^[0-9a-f]+$/);
    assert.ok(Number(d.days_until_expiration) > 0);
    assert.ok(Math.abs(Number(d.days_until_expiration) - days) <= 1, d.days_until_expiration);
    assert.equal(Date.parse(d.expiration_time), Date.parse(x.validTo));
    assert.equal(Date.parse(d.valid_from), Date.parse(x.validFrom));
    assert.match(d.expiration_time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.equal(d.ocsp_details, undefined);
  };

  it('lists the listener certificate and the cluster CA with path, serial, SANs and expiry', async (t) => {
    if (!h || !listenerCert || !caCert) return t.skip('openssl is not available');
    const { raw, body } = await certs();
    assert.equal(body.certificates.length, 2);
    const [down, up] = body.certificates;
    assert.equal(down!.ca_cert.length, 0);
    assert.equal(down!.cert_chain.length, 1);
    expectDetails(down!.cert_chain[0]!, certPath, listenerCert.cert);
    assert.deepEqual(down!.cert_chain[0]!.subject_alt_names, [
      { dns: 'herald.test' },
      { ip_address: '127.0.0.1' },
    ]);
    assert.equal(up!.cert_chain.length, 0);
    assert.equal(up!.ca_cert.length, 1);
    expectDetails(up!.ca_cert[0]!, caPath, caCert.cert);
    assert.deepEqual(up!.ca_cert[0]!.subject_alt_names, [
      { dns: 'localhost' },
      { uri: 'spiffe://herald/upstream' },
    ]);
    assert.equal(raw.includes('BEGIN CERTIFICATE'), false, 'certificate bytes stay out of /certs');
  });

  it('server.days_until_first_cert_expiring is the fewest days over every certificate', async (t) => {
    if (!h || !listenerCert || !caCert) return t.skip('openssl is not available');
    const { body } = await certs();
    const all = body.certificates.flatMap((c) => [...c.ca_cert, ...c.cert_chain]);
    const min = Math.min(...all.map((d) => Number(d.days_until_expiration)));
    assert.ok(min > 0 && min <= 10);
    assert.equal(await stat(h.adminPort, 'server.days_until_first_cert_expiring'), min);
  });

  it('the listener serves the certificate /certs describes', async (t) => {
    if (!h || !listenerCert) return t.skip('openssl is not available');
    const serial = await new Promise<string>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: h!.port('tls'), rejectUnauthorized: false }, () => {
        resolve(s.getPeerX509Certificate()!.serialNumber.toLowerCase());
        s.destroy();
      });
      s.once('error', reject);
    });
    const { body } = await certs();
    assert.equal(body.certificates[0]!.cert_chain[0]!.serial_number, serial);
  });

  it('/help lists /certs', async (t) => {
    if (!h) return t.skip('openssl is not available');
    const r = await adminGet(h.adminPort, '/help');
    assert.match(r.body, /\/certs/);
  });
});

describe('/certs without TLS', () => {
  let h: Running;
  before(async () => {
    h = await startHerald(
      httpBootstrap({
        routes: '- match: { prefix: / }\n  direct_response: { status: 200 }',
        clusters: staticCluster('plain', [1]),
      }),
    );
  });
  after(() => h.stop());

  it('returns no certificates, and the gauge is uint32 max as in Envoy', async () => {
    const r = await adminGet(h.adminPort, '/certs');
    assert.equal(r.status, 200);
    assert.deepEqual(JSON.parse(r.body), { certificates: [] });
    assert.equal(await stat(h.adminPort, 'server.days_until_first_cert_expiring'), 4294967295);
  });
});

describe('parseSubjectAltNames', () => {
  it("reads Node's subjectAltName string, quoted values included, keeping DNS, URI and IP", () => {
    assert.deepEqual(
      parseSubjectAltNames('DNS:a.example, email:x@example.com, IP Address:::1, URI:"spiffe://a/b, c"'),
      [{ dns: 'a.example' }, { ip_address: '::1' }, { uri: 'spiffe://a/b, c' }],
    );
    assert.deepEqual(parseSubjectAltNames(undefined), []);
  });
});

describe('certificate expiry arithmetic', () => {
  const c = selfSignedCert({ days: 5 });
  it('whole days; "0" and a gauge of 0 once a certificate has expired; <inline> for inline PEMs', (t) => {
    if (!c) return t.skip('openssl is not available');
    const ctx = { certificates: [{ path: '<inline>', pem: Buffer.from(c.cert) }], caCertificates: [] };
    const notAfter = Date.parse(new X509Certificate(c.cert).validTo);
    assert.equal(daysUntilFirstCertExpiring([ctx], notAfter - 2.5 * DAY_MS), 2);
    assert.equal(daysUntilFirstCertExpiring([ctx], notAfter + 1000), 0);
    const d = certificatesJson([ctx], notAfter + 1000).certificates[0]!.cert_chain[0]!;
    assert.equal(d.path, '<inline>');
    assert.equal(d.days_until_expiration, '0');
    assert.deepEqual(d.subject_alt_names, []);
  });
});
