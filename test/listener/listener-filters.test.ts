// Listener filters over real sockets: tls_inspector (SNI, ALPN, TLS or plaintext) and
// http_inspector (HTTP/1.x or h2c) feeding the filter-chain match, TLS passthrough by SNI to a
// tcp_proxy, and listener_filters_timeout.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import {
  bootstrap,
  cluster,
  directChain,
  downstreamTlsSocket,
  listener,
  type Obj,
  rawExchange,
  selfSignedCert,
  TCP_PROXY_TYPE,
} from '../helpers/data-path.js';
import { type Running, request, startHerald, stat } from '../helpers/harness.js';
import { parseResponses } from '../helpers/raw-http.js';

const TLS_INSPECTOR = {
  name: 'envoy.filters.listener.tls_inspector',
  typed_config: {
    '@type': 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector',
  },
};
const HTTP_INSPECTOR = {
  name: 'envoy.filters.listener.http_inspector',
  typed_config: {
    '@type': 'type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector',
  },
};

/** One HTTPS/1.1 request over TLS with `servername` (SNI) and `alpn`; resolves with the body. */
function tlsGet(port: number, servername: string, alpn = ['http/1.1']): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = tls.connect(
      { host: '127.0.0.1', port, servername, ALPNProtocols: alpn, rejectUnauthorized: false },
      () => s.write(`GET / HTTP/1.1\r\nHost: ${servername}\r\nConnection: close\r\n\r\n`),
    );
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => resolve(parseResponses(Buffer.concat(chunks))[0]?.body ?? ''));
    s.on('error', reject);
  });
}

function h2Get(url: string, opts: http2.SecureClientSessionOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url, opts);
    session.on('error', reject);
    const req = session.request({ ':path': '/' });
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      session.close();
      resolve(body);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('listener filters', () => {
  const cert = selfSignedCert();
  let h: Running | undefined;
  let tlsUpstream: tls.Server | undefined;
  before(async () => {
    if (!cert) return;
    const tlsChain = (body: string, match: Obj, alpn: string[] = []): Obj =>
      directChain(body, { filter_chain_match: match, transport_socket: downstreamTlsSocket(cert, alpn) });
    // A TLS server behind a tcp_proxy: Herald passes its handshake through untouched.
    tlsUpstream = tls.createServer({ cert: cert.cert, key: cert.key }, (s) => {
      s.on('error', () => {});
      s.end('from the TLS upstream');
    });
    await new Promise<void>((r) => tlsUpstream!.listen(0, '127.0.0.1', r));
    const upPort = (tlsUpstream.address() as net.AddressInfo).port;
    h = await startHerald(
      bootstrap({
        listeners: [
          listener(
            'sni',
            [
              tlsChain('exact', { server_names: ['a.example'] }),
              tlsChain('wildcard', { server_names: ['*.example'] }),
              tlsChain('any-tls', { transport_protocol: 'tls' }),
              directChain('plaintext', { filter_chain_match: { transport_protocol: 'raw_buffer' } }),
            ],
            { listener_filters: [TLS_INSPECTOR] },
          ),
          listener(
            'alpn',
            [
              tlsChain('h2-chain', { application_protocols: ['h2'] }, ['h2']),
              tlsChain('h1-chain', { application_protocols: ['http/1.1'] }, ['http/1.1']),
            ],
            { listener_filters: [TLS_INSPECTOR] },
          ),
          listener(
            'proto',
            [
              directChain('h2c-chain', { filter_chain_match: { application_protocols: ['h2c'] } }),
              directChain('http11-chain', { filter_chain_match: { application_protocols: ['http/1.1'] } }),
            ],
            { listener_filters: [HTTP_INSPECTOR] },
          ),
          listener(
            'passthrough',
            [
              {
                filter_chain_match: { server_names: ['localhost'] },
                filters: [
                  {
                    name: 'envoy.filters.network.tcp_proxy',
                    typed_config: { '@type': TCP_PROXY_TYPE, stat_prefix: 'pass', cluster: 'tls_up' },
                  },
                ],
              },
            ],
            { listener_filters: [TLS_INSPECTOR] },
          ),
          listener('silent', [tlsChain('silent-tls', { transport_protocol: 'tls' })], {
            stat_prefix: 'silent',
            listener_filters: [TLS_INSPECTOR],
            listener_filters_timeout: '0.2s',
          }),
          listener(
            'silent_continue',
            [directChain('continued', { filter_chain_match: { transport_protocol: 'raw_buffer' } })],
            {
              stat_prefix: 'silent_continue',
              listener_filters: [TLS_INSPECTOR],
              listener_filters_timeout: '0.2s',
              continue_on_listener_filters_timeout: true,
            },
          ),
        ],
        clusters: [cluster('tls_up', [upPort])],
      }),
    );
  });
  after(async () => {
    await h?.stop();
    await new Promise((r) => (tlsUpstream ? tlsUpstream.close(r) : r(undefined)));
  });

  it('tls_inspector: server_names picks the exact name first, then the wildcard, then a TLS chain without names', async (t) => {
    if (!h) return t.skip('openssl is not available');
    assert.equal(await tlsGet(h.port('sni'), 'a.example'), 'exact');
    assert.equal(await tlsGet(h.port('sni'), 'b.example'), 'wildcard');
    assert.equal(await tlsGet(h.port('sni'), 'other.test'), 'any-tls');
  });

  it('tls_inspector: a plaintext client on the same listener gets the raw_buffer chain', async (t) => {
    if (!h) return t.skip('openssl is not available');
    const r = await request(h.port('sni'), { path: '/' });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'plaintext');
  });

  it('tls_inspector: application_protocols follows the ALPN the client offers', async (t) => {
    if (!h) return t.skip('openssl is not available');
    const port = h.port('alpn');
    assert.equal(
      await h2Get(`https://127.0.0.1:${port}`, { rejectUnauthorized: false, servername: 'localhost' }),
      'h2-chain',
    );
    assert.equal(await tlsGet(port, 'localhost', ['http/1.1']), 'h1-chain');
  });

  it('http_inspector: h2c prior knowledge and HTTP/1.1 land on their own chains', async (t) => {
    if (!h) return t.skip('openssl is not available');
    const port = h.port('proto');
    assert.equal(await h2Get(`http://127.0.0.1:${port}`), 'h2c-chain');
    const r = await request(port, { path: '/' });
    assert.equal(r.body, 'http11-chain');
  });

  it('TLS passthrough: SNI picks a tcp_proxy chain and the upstream terminates TLS', async (t) => {
    if (!h) return t.skip('openssl is not available');
    const got = await new Promise<string>((resolve, reject) => {
      let b = '';
      const s = tls.connect(
        {
          host: '127.0.0.1',
          port: h!.port('passthrough'),
          servername: 'localhost',
          rejectUnauthorized: false,
        },
        () => {},
      );
      s.setEncoding('utf8');
      s.on('data', (c: string) => (b += c));
      s.on('end', () => resolve(b));
      s.on('error', reject);
    });
    assert.equal(got, 'from the TLS upstream');
  });

  it('listener_filters_timeout: a client that says nothing is closed and counted', async (t) => {
    if (!h) return t.skip('openssl is not available');
    const before = (await stat(h.adminPort, 'listener.silent.downstream_pre_cx_timeout')) ?? 0;
    const r = await rawExchange(h.port('silent'), Buffer.alloc(0), 3000);
    assert.equal(r.closed, true, 'the silent connection was not closed');
    assert.equal(r.data.length, 0);
    assert.equal(await stat(h.adminPort, 'listener.silent.downstream_pre_cx_timeout'), before + 1);
  });

  it('continue_on_listener_filters_timeout: the connection goes on to the chain match with what was seen', async (t) => {
    if (!h) return t.skip('openssl is not available');
    const port = h.port('silent_continue');
    const got = await new Promise<string>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const s = net.connect(port, '127.0.0.1');
      // Silent past the timeout, then a plaintext request.
      s.on('connect', () =>
        setTimeout(() => s.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), 500),
      );
      s.on('data', (c: Buffer) => chunks.push(c));
      s.on('end', () => resolve(parseResponses(Buffer.concat(chunks))[0]?.body ?? ''));
      s.on('error', reject);
    });
    assert.equal(got, 'continued');
    assert.equal(await stat(h.adminPort, 'listener.silent_continue.downstream_pre_cx_timeout'), 1);
  });
});
