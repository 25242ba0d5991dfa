// Route actions over real sockets: weighted clusters, cluster_header, path
// and host rewrites, redirects, direct responses and request timeouts.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cluster, type EchoUpstream, httpConfig, type Obj, startEcho } from '../helpers/data-path.js';
import { type Running, request, startHerald, stat } from '../helpers/harness.js';

describe('route actions: cluster selection', () => {
  let a: EchoUpstream;
  let b: EchoUpstream;
  let h: Running;
  before(async () => {
    a = await startEcho('a');
    b = await startEcho('b');
    h = await startHerald(
      httpConfig({
        hcmExtra: { stat_prefix: 'sel' },
        routes: [
          {
            match: { prefix: '/split' },
            route: {
              weighted_clusters: {
                clusters: [
                  {
                    name: 'a',
                    weight: 80,
                    request_headers_to_add: [{ header: { key: 'x-picked', value: 'a' } }],
                    response_headers_to_add: [{ header: { key: 'x-wc', value: 'wa' } }],
                  },
                  {
                    name: 'b',
                    weight: 20,
                    request_headers_to_add: [{ header: { key: 'x-picked', value: 'b' } }],
                    response_headers_to_add: [{ header: { key: 'x-wc', value: 'wb' } }],
                  },
                ],
              },
            },
          },
          { match: { prefix: '/by-header' }, route: { cluster_header: 'x-cluster' } },
        ],
        clusters: [cluster('a', [a.port]), cluster('b', [b.port])],
      }),
    );
  });
  after(async () => {
    await h.stop();
    await a.close();
    await b.close();
  });

  it('weighted_clusters splits about 80/20 and applies per-cluster header mutations', async () => {
    const counts: Record<string, number> = { a: 0, b: 0 };
    const n = 400;
    for (let i = 0; i < n; i++) {
      const r = await request(h.port(), { path: '/split' });
      assert.equal(r.status, 200);
      const name = JSON.parse(r.body).name as string;
      counts[name] = (counts[name] ?? 0) + 1;
      assert.equal(JSON.parse(r.body).headers['x-picked'], name);
      assert.equal(r.headers['x-wc'], `w${name}`);
    }
    assert.equal(counts.a! + counts.b!, n);
    // Binomial(400, 0.2): mean 80, sd 8; [45, 115] is beyond 4 sd either way.
    assert.ok(counts.b! >= 45 && counts.b! <= 115, JSON.stringify(counts));
  });

  it('cluster_header picks the cluster named by a request header', async () => {
    const ra = await request(h.port(), { path: '/by-header', headers: { 'x-cluster': 'a' } });
    const rb = await request(h.port(), { path: '/by-header', headers: { 'x-cluster': 'b' } });
    assert.equal(ra.status, 200);
    assert.equal(JSON.parse(ra.body).name, 'a');
    assert.equal(JSON.parse(rb.body).name, 'b');
  });

  it('cluster_header naming an unknown cluster, or absent: 503 with an empty body', async () => {
    const r = await request(h.port(), { path: '/by-header', headers: { 'x-cluster': 'nope' } });
    assert.equal(r.status, 503);
    assert.equal(r.body, '');
    const r2 = await request(h.port(), { path: '/by-header' });
    assert.equal(r2.status, 503);
    assert.equal(r2.body, '');
  });

  it('an unknown cluster increments http.<stat_prefix>.no_cluster', async () => {
    const before = (await stat(h.adminPort, 'http.sel.no_cluster')) ?? 0;
    await request(h.port(), { path: '/by-header', headers: { 'x-cluster': 'nope' } });
    assert.equal(await stat(h.adminPort, 'http.sel.no_cluster'), before + 1);
  });
});

describe('route actions: path and host rewrites', () => {
  let up: EchoUpstream;
  let h: Running;
  before(async () => {
    up = await startEcho('up');
    h = await startHerald(
      httpConfig({
        routes: [
          { match: { prefix: '/api/' }, route: { cluster: 'up', prefix_rewrite: '/v2/' } },
          { match: { path: '/exact-old' }, route: { cluster: 'up', prefix_rewrite: '/exact-new' } },
          { match: { prefix: '/strip' }, route: { cluster: 'up', prefix_rewrite: '/' } },
          {
            match: { prefix: '/svc/' },
            route: {
              cluster: 'up',
              regex_rewrite: {
                pattern: { regex: '^/svc/([^/]+)/(.*)$' },
                substitution: '/\\2/instance/\\1',
              },
            },
          },
          {
            match: { prefix: '/multi/' },
            route: { cluster: 'up', regex_rewrite: { pattern: { regex: 'one' }, substitution: 'two' } },
          },
          { match: { prefix: '/host' }, route: { cluster: 'up', host_rewrite_literal: 'rewritten.example' } },
          { match: { prefix: '/' }, route: { cluster: 'up' } },
        ],
        clusters: [cluster('up', [up.port])],
      }),
    );
  });
  after(async () => {
    await h.stop();
    await up.close();
  });

  const seenFor = async (path: string, headers: Record<string, string> = {}) => {
    const r = await request(h.port(), { path, headers });
    assert.equal(r.status, 200);
    return up.seen[up.seen.length - 1]!;
  };

  it('prefix_rewrite replaces the matched prefix, keeps the query, sets x-envoy-original-path', async () => {
    const s = await seenFor('/api/users/7?x=1&y=2');
    assert.equal(s.url, '/v2/users/7?x=1&y=2');
    assert.equal(s.headers['x-envoy-original-path'], '/api/users/7?x=1&y=2');
  });

  it('prefix_rewrite on an exact path route and to a bare /', async () => {
    assert.equal((await seenFor('/exact-old?q')).url, '/exact-new?q');
    assert.equal((await seenFor('/strip/a/b')).url, '//a/b');
    assert.equal((await seenFor('/stripped')).url, '/ped');
  });

  it('regex_rewrite substitutes capture groups and keeps the query', async () => {
    const s = await seenFor('/svc/foo/bar/baz?q=1');
    assert.equal(s.url, '/bar/baz/instance/foo?q=1');
    assert.equal(s.headers['x-envoy-original-path'], '/svc/foo/bar/baz?q=1');
  });

  it('regex_rewrite replaces every match (Envoy example: one -> two)', async () => {
    assert.equal((await seenFor('/multi/one/yyy/one/zzz')).url, '/multi/two/yyy/two/zzz');
  });

  it('no rewrite: the path is untouched and x-envoy-original-path is not sent', async () => {
    const s = await seenFor('/plain/path?k=v');
    assert.equal(s.url, '/plain/path?k=v');
    assert.equal(s.headers['x-envoy-original-path'], undefined);
  });

  it('host_rewrite_literal replaces the Host header upstream', async () => {
    const s = await seenFor('/host', { host: 'original.example' });
    assert.equal(s.headers.host, 'rewritten.example');
    const s2 = await seenFor('/other', { host: 'original.example' });
    assert.equal(s2.headers.host, 'original.example');
  });
});

describe('route actions: redirects', () => {
  let h: Running;
  before(async () => {
    const redirect = (prefix: string, r: Obj): Obj => ({ match: { prefix }, redirect: r });
    h = await startHerald(
      httpConfig({
        routes: [
          redirect('/https', { https_redirect: true }),
          redirect('/hostport', { host_redirect: 'other.example', port_redirect: 9000 }),
          redirect('/host', { host_redirect: 'new.example.com' }),
          redirect('/port', { port_redirect: 8443 }),
          redirect('/path-keep', { path_redirect: '/new-path' }),
          redirect('/path-strip', { path_redirect: '/new-path', strip_query: true }),
          redirect('/path-query', { path_redirect: '/new-path?foo=1', strip_query: true }),
          redirect('/old/', { prefix_rewrite: '/new/' }),
          redirect('/rx/', { regex_rewrite: { pattern: { regex: '^/rx/(.*)$' }, substitution: '/re/\\1' } }),
          redirect('/found', { path_redirect: '/f', response_code: 'FOUND' }),
          redirect('/seeother', { path_redirect: '/s', response_code: 'SEE_OTHER' }),
          redirect('/temp', { path_redirect: '/t', response_code: 'TEMPORARY_REDIRECT' }),
          redirect('/perm', { path_redirect: '/p', response_code: 'PERMANENT_REDIRECT' }),
          redirect('/strip-only', { strip_query: true }),
          redirect('/scheme', { scheme_redirect: 'ftp' }),
        ],
      }),
    );
  });
  after(() => h.stop());

  const loc = async (path: string, host = 'example.com') => {
    const r = await request(h.port(), { path, headers: { host } });
    return { status: r.status, location: r.headers.location, body: r.body };
  };

  it('https_redirect swaps the scheme with 301 and an empty body', async () => {
    assert.deepEqual(await loc('/https/a?b=1'), {
      status: 301,
      location: 'https://example.com/https/a?b=1',
      body: '',
    });
  });

  it('https_redirect drops an explicit :80 but keeps other ports', async () => {
    assert.equal((await loc('/https/x', 'example.com:80')).location, 'https://example.com/https/x');
    assert.equal((await loc('/https/x', 'example.com:8080')).location, 'https://example.com:8080/https/x');
  });

  it('scheme_redirect sets any scheme', async () => {
    assert.equal((await loc('/scheme/x')).location, 'ftp://example.com/scheme/x');
  });

  it('host_redirect and port_redirect', async () => {
    assert.equal((await loc('/host/a?q=1')).location, 'http://new.example.com/host/a?q=1');
    assert.equal((await loc('/port/a', 'example.com:8080')).location, 'http://example.com:8443/port/a');
    assert.equal((await loc('/port/a', 'example.com')).location, 'http://example.com:8443/port/a');
    assert.equal((await loc('/hostport/z')).location, 'http://other.example:9000/hostport/z');
  });

  it('path_redirect keeps the request query unless strip_query', async () => {
    assert.equal((await loc('/path-keep?bar=1')).location, 'http://example.com/new-path?bar=1');
    assert.equal((await loc('/path-strip?bar=1')).location, 'http://example.com/new-path');
    assert.equal((await loc('/strip-only/x?bar=1')).location, 'http://example.com/strip-only/x');
  });

  it('a query in path_redirect replaces the request query and is not stripped by strip_query', async () => {
    assert.equal((await loc('/path-query?bar=1')).location, 'http://example.com/new-path?foo=1');
  });

  it('prefix_rewrite and regex_rewrite rewrite the redirect path', async () => {
    assert.equal((await loc('/old/x/y?z=1')).location, 'http://example.com/new/x/y?z=1');
    assert.equal((await loc('/rx/a/b')).location, 'http://example.com/re/a/b');
  });

  it('response_code picks 302, 303, 307 or 308', async () => {
    assert.equal((await loc('/found')).status, 302);
    assert.equal((await loc('/seeother')).status, 303);
    assert.equal((await loc('/temp')).status, 307);
    assert.equal((await loc('/perm')).status, 308);
    assert.equal((await loc('/perm')).location, 'http://example.com/p');
  });

  it('redirects are counted in http.<stat_prefix>.rq_redirect', async () => {
    const before = (await stat(h.adminPort, 'http.test.rq_redirect')) ?? 0;
    await loc('/found');
    assert.equal(await stat(h.adminPort, 'http.test.rq_redirect'), before + 1);
  });
});

describe('route actions: direct_response', () => {
  let h: Running;
  before(async () => {
    h = await startHerald(
      httpConfig({
        hcmExtra: { stat_prefix: 'dr' },
        routes: [
          {
            match: { path: '/hello' },
            direct_response: { status: 200, body: { inline_string: 'hello world' } },
          },
          {
            match: { path: '/teapot' },
            direct_response: { status: 418, body: { inline_bytes: 'c2hvcnQ=' } },
          },
          { match: { path: '/empty' }, direct_response: { status: 503 } },
        ],
      }),
    );
  });
  after(() => h.stop());

  it('answers with the status and an inline body as text/plain', async () => {
    const r = await request(h.port(), { path: '/hello' });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'hello world');
    assert.equal(r.headers['content-type'], 'text/plain');
    assert.equal(r.headers['content-length'], '11');
    assert.equal(r.headers.server, 'envoy');
  });

  it('inline_bytes body and any status', async () => {
    const r = await request(h.port(), { path: '/teapot' });
    assert.equal(r.status, 418);
    assert.equal(r.body, 'short');
  });

  it('no body: content-length 0 and no content-type', async () => {
    const r = await request(h.port(), { path: '/empty' });
    assert.equal(r.status, 503);
    assert.equal(r.body, '');
    assert.equal(r.headers['content-length'], '0');
    assert.equal(r.headers['content-type'], undefined);
  });

  it('direct responses are counted in http.<stat_prefix>.rq_direct_response', async () => {
    const before = (await stat(h.adminPort, 'http.dr.rq_direct_response')) ?? 0;
    await request(h.port(), { path: '/hello' });
    assert.equal(await stat(h.adminPort, 'http.dr.rq_direct_response'), before + 1);
  });
});

describe('route actions: timeouts', () => {
  let slow: EchoUpstream;
  let h: Running;
  const timers = new Set<NodeJS.Timeout>();
  before(async () => {
    // Answers after ?delay=<ms> (default 2 s).
    slow = await startEcho('slow', (s, res) => {
      const delay = Number(new URL(s.url, 'http://x').searchParams.get('delay') ?? '2000');
      const t = setTimeout(() => {
        timers.delete(t);
        if (!res.destroyed) res.end('late');
      }, delay);
      timers.add(t);
    });
    h = await startHerald(
      httpConfig({
        routes: [
          { match: { prefix: '/short' }, route: { cluster: 'slow', timeout: '0.2s' } },
          { match: { prefix: '/long' }, route: { cluster: 'slow', timeout: '5s' } },
          { match: { prefix: '/none' }, route: { cluster: 'slow', timeout: '0s' } },
          { match: { prefix: '/default' }, route: { cluster: 'slow' } },
        ],
        clusters: [cluster('slow', [slow.port])],
      }),
    );
  });
  after(async () => {
    for (const t of timers) clearTimeout(t);
    await h.stop();
    await slow.close();
  });

  it('route timeout: 504 "upstream request timeout" and upstream_rq_timeout', async () => {
    const t0 = Date.now();
    const r = await request(h.port(), { path: '/short?delay=3000' });
    const took = Date.now() - t0;
    assert.equal(r.status, 504);
    assert.equal(r.body, 'upstream request timeout');
    assert.equal(r.headers['content-type'], 'text/plain');
    assert.ok(took >= 150 && took < 1500, `took ${took} ms`);
    assert.equal(await stat(h.adminPort, 'cluster.slow.upstream_rq_timeout'), 1);
    // The upstream was told how long it had.
    assert.equal(slow.seen[slow.seen.length - 1]!.headers['x-envoy-expected-rq-timeout-ms'], '200');
  });

  it('the default route timeout is 15 s (x-envoy-expected-rq-timeout-ms: 15000)', async () => {
    const r = await request(h.port(), { path: '/default?delay=0' });
    assert.equal(r.status, 200);
    assert.equal(slow.seen[slow.seen.length - 1]!.headers['x-envoy-expected-rq-timeout-ms'], '15000');
  });

  // Envoy honours x-envoy-* control headers only on internal requests: without use_remote_address,
  // that is a request whose x-forwarded-for holds a single internal address.
  const INTERNAL = { 'x-forwarded-for': '10.0.0.1' };

  it('x-envoy-upstream-rq-timeout-ms extends the route timeout and is not forwarded', async () => {
    const r = await request(h.port(), {
      path: '/short?delay=400',
      headers: { ...INTERNAL, 'x-envoy-upstream-rq-timeout-ms': '3000' },
    });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'late');
    const s = slow.seen[slow.seen.length - 1]!;
    assert.equal(s.headers['x-envoy-expected-rq-timeout-ms'], '3000');
    assert.equal(s.headers['x-envoy-upstream-rq-timeout-ms'], undefined);
  });

  it('x-envoy-upstream-rq-timeout-ms shortens the route timeout', async () => {
    const t0 = Date.now();
    const r = await request(h.port(), {
      path: '/long?delay=3000',
      headers: { ...INTERNAL, 'x-envoy-upstream-rq-timeout-ms': '150' },
    });
    assert.equal(r.status, 504);
    assert.equal(r.body, 'upstream request timeout');
    assert.ok(Date.now() - t0 < 1500);
  });

  it('x-envoy-upstream-rq-timeout-ms from an external client (no XFF) is ignored', async () => {
    const r = await request(h.port(), {
      path: '/short?delay=400',
      headers: { 'x-envoy-upstream-rq-timeout-ms': '3000' },
    });
    assert.equal(r.status, 504);
  });

  it('timeout: 0s disables the timeout and x-envoy-expected-rq-timeout-ms', async () => {
    const r = await request(h.port(), { path: '/none?delay=300' });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'late');
    assert.equal(slow.seen[slow.seen.length - 1]!.headers['x-envoy-expected-rq-timeout-ms'], undefined);
  });
});
