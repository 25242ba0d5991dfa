// Header handling over real sockets: request/response header mutations at
// every level, Envoy's request headers (x-request-id, x-forwarded-*,
// x-envoy-*), hop-by-hop stripping and the server header.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  bootstrap,
  cluster,
  type EchoUpstream,
  hcmFilter,
  listener,
  type Obj,
  rawExchange,
  startEcho,
} from '../helpers/data-path.js';
import { type Running, request, startHerald } from '../helpers/harness.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function hdr(key: string, value: string, appendAction?: string, extra: Obj = {}): Obj {
  return { header: { key, value }, ...(appendAction ? { append_action: appendAction } : {}), ...extra };
}

describe('headers', () => {
  let up: EchoUpstream;
  let h: Running;
  before(async () => {
    // The upstream echoes the request and adds a few response headers of its own.
    up = await startEcho('up', (s, res) => {
      res.setHeader('content-type', 'application/json');
      res.setHeader('x-upstream-secret', 'hidden');
      res.setHeader('x-resp-level', 'upstream');
      if (s.url.startsWith('/server')) res.setHeader('server', 'backend/1.0');
      if (s.url.startsWith('/hop')) {
        res.setHeader('keep-alive', 'timeout=99');
        res.setHeader('proxy-connection', 'keep-alive');
      }
      res.end(JSON.stringify({ url: s.url, headers: s.headers }));
    });
    const routeConfig = (extra: Obj = {}): Obj => ({
      name: 'rc',
      request_headers_to_add: [hdr('x-rc', 'rc'), hdr('x-level', 'rc', 'OVERWRITE_IF_EXISTS_OR_ADD')],
      response_headers_to_add: [
        hdr('x-resp-rc', 'rc'),
        hdr('x-resp-level', 'rc', 'OVERWRITE_IF_EXISTS_OR_ADD'),
      ],
      virtual_hosts: [
        {
          name: 'vh',
          domains: ['*'],
          request_headers_to_add: [hdr('x-vh', 'vh'), hdr('x-level', 'vh', 'OVERWRITE_IF_EXISTS_OR_ADD')],
          response_headers_to_add: [hdr('x-resp-vh', 'vh')],
          routes: [
            {
              match: { prefix: '/' },
              route: { cluster: 'up' },
              request_headers_to_add: [
                hdr('x-append', 'route'),
                hdr('x-add-if-absent', 'route', 'ADD_IF_ABSENT'),
                hdr('x-overwrite', 'route', 'OVERWRITE_IF_EXISTS_OR_ADD'),
                hdr('x-overwrite-if-exists', 'route', 'OVERWRITE_IF_EXISTS'),
                hdr('x-legacy-append-false', 'route', undefined, { append: false }),
                hdr('x-client-ip', '%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%'),
                hdr('x-copy', 'copied:%REQ(x-src)%'),
                hdr('x-copy-bare', '%REQ(x-src)%'),
                hdr('x-proto', '%PROTOCOL%'),
                hdr('x-percent', '100%%'),
                hdr('x-level', 'route', 'OVERWRITE_IF_EXISTS_OR_ADD'),
              ],
              request_headers_to_remove: ['x-secret', 'x-secret-2'],
              response_headers_to_add: [
                hdr('x-resp-route', 'route'),
                hdr('x-resp-echo', '%REQ(x-src)%'),
                hdr('x-resp-level', 'route', 'OVERWRITE_IF_EXISTS_OR_ADD'),
              ],
              response_headers_to_remove: ['x-upstream-secret'],
            },
          ],
        },
      ],
      ...extra,
    });
    const l = (name: string, extra: Obj = {}) =>
      listener(name, [{ filters: [hcmFilter({ statPrefix: name, routeConfig: routeConfig(), extra })] }]);
    h = await startHerald(
      bootstrap({
        listeners: [
          l('plain'),
          l('edge', { use_remote_address: true }),
          l('named', { server_name: 'herald-test' }),
          l('append_if_absent', { server_header_transformation: 'APPEND_IF_ABSENT' }),
          l('pass_through', { server_header_transformation: 'PASS_THROUGH' }),
          l('no_rid', { generate_request_id: false }),
        ],
        clusters: [cluster('up', [up.port])],
      }),
    );
  });
  after(async () => {
    await h.stop();
    await up.close();
  });

  /** Sends a request through listener `name`; returns the upstream's view and the client's response. */
  const via = async (name: string, path = '/', headers: Record<string, string | string[]> = {}) => {
    const r = await request(h.port(name), { path, headers });
    assert.equal(r.status, 200, r.body);
    const seen = up.seen[up.seen.length - 1]!;
    return { upstream: seen.headers, res: r.headers };
  };

  it('APPEND_IF_EXISTS_OR_ADD (the default) adds a value next to the client one', async () => {
    assert.equal((await via('plain')).upstream['x-append'], 'route');
    assert.equal((await via('plain', '/', { 'x-append': 'client' })).upstream['x-append'], 'client, route');
  });

  it('ADD_IF_ABSENT only adds a missing header', async () => {
    assert.equal((await via('plain')).upstream['x-add-if-absent'], 'route');
    assert.equal(
      (await via('plain', '/', { 'x-add-if-absent': 'client' })).upstream['x-add-if-absent'],
      'client',
    );
  });

  it('OVERWRITE_IF_EXISTS_OR_ADD (and append: false) replace the client value', async () => {
    const u = (await via('plain', '/', { 'x-overwrite': 'client', 'x-legacy-append-false': 'client' }))
      .upstream;
    assert.equal(u['x-overwrite'], 'route');
    assert.equal(u['x-legacy-append-false'], 'route');
    assert.equal((await via('plain')).upstream['x-overwrite'], 'route');
  });

  it('OVERWRITE_IF_EXISTS only replaces a present header', async () => {
    assert.equal((await via('plain')).upstream['x-overwrite-if-exists'], undefined);
    assert.equal(
      (await via('plain', '/', { 'x-overwrite-if-exists': 'client' })).upstream['x-overwrite-if-exists'],
      'route',
    );
  });

  it('command operators: %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%, %REQ(x)%, %PROTOCOL% and %%', async () => {
    const u = (await via('plain', '/', { 'x-src': 'abc' })).upstream;
    assert.equal(u['x-client-ip'], '127.0.0.1');
    assert.equal(u['x-copy'], 'copied:abc');
    assert.equal(u['x-copy-bare'], 'abc');
    assert.equal(u['x-proto'], 'HTTP/1.1');
    assert.equal(u['x-percent'], '100%');
  });

  it('a value that formats to empty is not added (keep_empty_value is false)', async () => {
    const u = (await via('plain')).upstream;
    assert.equal(u['x-copy-bare'], undefined);
    assert.equal(u['x-copy'], 'copied:');
  });

  it('route, virtual host and route config headers are all added; the route config applies last', async () => {
    const u = (await via('plain')).upstream;
    assert.equal(u['x-vh'], 'vh');
    assert.equal(u['x-rc'], 'rc');
    assert.equal(u['x-level'], 'rc');
  });

  it('request_headers_to_remove drops client headers', async () => {
    const u = (await via('plain', '/', { 'x-secret': 's', 'x-secret-2': 't', 'x-kept': 'k' })).upstream;
    assert.equal(u['x-secret'], undefined);
    assert.equal(u['x-secret-2'], undefined);
    assert.equal(u['x-kept'], 'k');
  });

  it('response_headers_to_add at every level, response_headers_to_remove, %REQ()% in responses', async () => {
    const r = (await via('plain', '/', { 'x-src': 'zzz' })).res;
    assert.equal(r['x-resp-route'], 'route');
    assert.equal(r['x-resp-vh'], 'vh');
    assert.equal(r['x-resp-rc'], 'rc');
    assert.equal(r['x-resp-echo'], 'zzz');
    assert.equal(r['x-resp-level'], 'rc');
    assert.equal(r['x-upstream-secret'], undefined);
    assert.match(String(r['x-envoy-upstream-service-time']), /^\d+$/);
  });

  it('x-request-id is generated when absent and kept when present', async () => {
    const a = (await via('plain')).upstream['x-request-id'];
    const b = (await via('plain')).upstream['x-request-id'];
    assert.match(String(a), UUID);
    assert.match(String(b), UUID);
    assert.notEqual(a, b);
    assert.equal(
      (await via('plain', '/', { 'x-request-id': 'my-id-1' })).upstream['x-request-id'],
      'my-id-1',
    );
  });

  it('generate_request_id: false leaves x-request-id alone', async () => {
    assert.equal((await via('no_rid')).upstream['x-request-id'], undefined);
  });

  it('x-forwarded-proto is set to http when absent and kept from a trusted hop', async () => {
    assert.equal((await via('plain')).upstream['x-forwarded-proto'], 'http');
    assert.equal(
      (await via('plain', '/', { 'x-forwarded-proto': 'https' })).upstream['x-forwarded-proto'],
      'https',
    );
  });

  it('without use_remote_address, x-forwarded-for is passed through untouched', async () => {
    assert.equal((await via('plain')).upstream['x-forwarded-for'], undefined);
    assert.equal(
      (await via('plain', '/', { 'x-forwarded-for': '1.2.3.4' })).upstream['x-forwarded-for'],
      '1.2.3.4',
    );
  });

  it('use_remote_address: appends the peer to x-forwarded-for and marks 127.0.0.1 internal', async () => {
    const u = (await via('edge', '/', { 'x-forwarded-proto': 'https' })).upstream;
    // Envoy appends the peer address (for a loopback peer, its own local address).
    assert.equal(net.isIP(String(u['x-forwarded-for'])), 4, String(u['x-forwarded-for']));
    assert.equal(u['x-envoy-internal'], 'true');
    assert.equal(u['x-envoy-external-address'], undefined);
    // The edge overwrites an untrusted x-forwarded-proto.
    assert.equal(u['x-forwarded-proto'], 'http');
    const u2 = (await via('edge', '/', { 'x-forwarded-for': '1.2.3.4' })).upstream;
    assert.match(String(u2['x-forwarded-for']), /^1\.2\.3\.4,\d+\.\d+\.\d+\.\d+$/);
  });

  it('use_remote_address with a client XFF: not internal, so an edge request (Envoy: XFF must hold a single internal address)', async () => {
    const u = (
      await via('edge', '/', {
        'x-forwarded-for': '1.2.3.4',
        'x-request-id': 'client-id',
        'x-envoy-internal': 'true',
      })
    ).upstream;
    assert.equal(u['x-envoy-internal'], undefined);
    assert.equal(u['x-envoy-external-address'], '127.0.0.1');
    assert.notEqual(u['x-request-id'], 'client-id');
    assert.match(String(u['x-request-id']), UUID);
  });

  it('a client-supplied x-envoy-internal is always removed before Envoy decides', async () => {
    assert.equal(
      (await via('plain', '/', { 'x-envoy-internal': 'true' })).upstream['x-envoy-internal'],
      undefined,
    );
  });

  it('without use_remote_address, a single internal XFF address makes the request internal', async () => {
    const u = (await via('plain', '/', { 'x-forwarded-for': '10.1.2.3' })).upstream;
    assert.equal(u['x-envoy-internal'], 'true');
  });

  it('external requests (no XFF, no use_remote_address) lose x-envoy-* control headers', async () => {
    const u = (
      await via('plain', '/', {
        'x-envoy-retry-on': '5xx',
        'x-envoy-max-retries': '3',
        'x-envoy-ip-tags': 't',
      })
    ).upstream;
    assert.equal(u['x-envoy-retry-on'], undefined);
    assert.equal(u['x-envoy-max-retries'], undefined);
    assert.equal(u['x-envoy-ip-tags'], undefined);
  });

  it('x-envoy-expected-rq-timeout-ms carries the route timeout upstream', async () => {
    assert.equal((await via('plain')).upstream['x-envoy-expected-rq-timeout-ms'], '15000');
  });

  it('hop-by-hop request headers are not forwarded', async () => {
    // A raw request so the client controls every header.
    const req =
      'GET /hop-req HTTP/1.1\r\nHost: h\r\nConnection: close, x-nominated\r\nKeep-Alive: timeout=5\r\n' +
      'Proxy-Connection: keep-alive\r\nUpgrade: foo/1\r\nTE: gzip\r\n\r\n';
    const r = await rawExchange(h.port('plain'), req, 3000);
    assert.match(r.data.toString(), /^HTTP\/1\.1 200 /);
    const u = up.seen[up.seen.length - 1]!.headers;
    assert.equal(up.seen[up.seen.length - 1]!.url, '/hop-req');
    assert.notEqual(u.connection, 'close, x-nominated');
    assert.equal(u['keep-alive'], undefined);
    assert.equal(u['proxy-connection'], undefined);
    assert.equal(u.upgrade, undefined);
    assert.equal(u.te, undefined);
  });

  it('hop-by-hop response headers from the upstream are not forwarded', async () => {
    const r = (await via('plain', '/hop')).res;
    assert.equal(r['proxy-connection'], undefined);
    assert.notEqual(r['keep-alive'], 'timeout=99');
  });

  it('server header: overwritten with "envoy" by default, or with server_name', async () => {
    assert.equal((await via('plain', '/server')).res.server, 'envoy');
    assert.equal((await via('plain', '/')).res.server, 'envoy');
    assert.equal((await via('named', '/server')).res.server, 'herald-test');
  });

  it('server header: APPEND_IF_ABSENT and PASS_THROUGH', async () => {
    assert.equal((await via('append_if_absent', '/server')).res.server, 'backend/1.0');
    assert.equal((await via('append_if_absent', '/')).res.server, 'envoy');
    assert.equal((await via('pass_through', '/server')).res.server, 'backend/1.0');
    assert.equal((await via('pass_through', '/')).res.server, undefined);
  });
});
