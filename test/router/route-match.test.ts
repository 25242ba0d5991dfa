// Route matching over real sockets: path matchers, header and query
// matchers, gRPC matching, route order, virtual host selection by
// :authority, and the no-route reply.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { bootstrap, hcmFilter, listener, type Obj } from '../helpers/data-path.js';
import {
  httpBootstrap,
  type Running,
  request,
  startHerald,
  startUpstream,
  stat,
  staticCluster,
  type Upstream,
} from '../helpers/harness.js';

/** A route answering 200 with its own name as the body. */
function named(name: string, match: Obj): Obj {
  return { name, match, direct_response: { status: 200, body: { inline_string: name } } };
}

async function hit(
  port: number,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  const r = await request(port, { path, headers });
  return { status: r.status, body: r.body };
}

describe('route matching: path matchers', () => {
  let h: Running;
  before(async () => {
    h = await startHerald(
      bootstrap({
        listeners: [
          listener('main', [
            {
              filters: [
                hcmFilter({
                  routeConfig: {
                    name: 'rc',
                    virtual_hosts: [
                      {
                        name: 'vh',
                        domains: ['*'],
                        routes: [
                          named('exact', { path: '/exact' }),
                          named('regex', { safe_regex: { regex: '/re/[0-9]+' } }),
                          named('sep', { path_separated_prefix: '/sep' }),
                          named('ci', { prefix: '/CaSe', case_sensitive: false }),
                          named('ci-path', { path: '/Exact-CI', case_sensitive: false }),
                          named('ci-regex', { safe_regex: { regex: '/rx-[a-z]+' }, case_sensitive: false }),
                          named('cs', { prefix: '/Upper' }),
                          named('api', { prefix: '/api' }),
                          named('api-users', { prefix: '/api/users' }),
                        ],
                      },
                    ],
                  },
                }),
              ],
            },
          ]),
        ],
      }),
    );
  });
  after(() => h.stop());

  it('path matches the whole path exactly, ignoring the query string', async () => {
    assert.deepEqual(await hit(h.port(), '/exact'), { status: 200, body: 'exact' });
    assert.deepEqual(await hit(h.port(), '/exact?x=1'), { status: 200, body: 'exact' });
    assert.equal((await hit(h.port(), '/exact/')).status, 404);
    assert.equal((await hit(h.port(), '/exactly')).status, 404);
  });

  it('safe_regex must match the full path', async () => {
    assert.deepEqual(await hit(h.port(), '/re/123'), { status: 200, body: 'regex' });
    assert.deepEqual(await hit(h.port(), '/re/123?q=abc'), { status: 200, body: 'regex' });
    assert.equal((await hit(h.port(), '/re/123x')).status, 404);
    assert.equal((await hit(h.port(), '/x/re/123')).status, 404);
    assert.equal((await hit(h.port(), '/re/')).status, 404);
  });

  it('path_separated_prefix matches the prefix alone or followed by /', async () => {
    assert.deepEqual(await hit(h.port(), '/sep'), { status: 200, body: 'sep' });
    assert.deepEqual(await hit(h.port(), '/sep/a/b'), { status: 200, body: 'sep' });
    assert.deepEqual(await hit(h.port(), '/sep?x=y'), { status: 200, body: 'sep' });
    assert.equal((await hit(h.port(), '/separate')).status, 404);
  });

  it('case_sensitive: false makes prefix and path matching case-insensitive', async () => {
    assert.deepEqual(await hit(h.port(), '/case/x'), { status: 200, body: 'ci' });
    assert.deepEqual(await hit(h.port(), '/CASE'), { status: 200, body: 'ci' });
    assert.deepEqual(await hit(h.port(), '/exact-ci'), { status: 200, body: 'ci-path' });
    assert.deepEqual(await hit(h.port(), '/EXACT-CI'), { status: 200, body: 'ci-path' });
  });

  it('prefix matching is case-sensitive by default', async () => {
    assert.deepEqual(await hit(h.port(), '/Upper/x'), { status: 200, body: 'cs' });
    assert.equal((await hit(h.port(), '/upper/x')).status, 404);
  });

  it('case_sensitive is ignored for safe_regex (Envoy: "Ignored for safe_regex matching")', async () => {
    assert.deepEqual(await hit(h.port(), '/rx-abc'), { status: 200, body: 'ci-regex' });
    assert.equal((await hit(h.port(), '/RX-ABC')).status, 404);
  });

  it('the first matching route wins, even when a later one is more specific', async () => {
    assert.deepEqual(await hit(h.port(), '/api/users/7'), { status: 200, body: 'api' });
    assert.deepEqual(await hit(h.port(), '/apix'), { status: 200, body: 'api' });
  });
});

describe('route matching: headers, query parameters and gRPC', () => {
  let h: Running;
  before(async () => {
    const routes: Obj[] = [
      named('h-exact', {
        prefix: '/h/exact',
        headers: [{ name: 'x-v', string_match: { exact: 'Alpha' } }],
      }),
      named('h-exact-ic', {
        prefix: '/h/icase',
        headers: [{ name: 'x-v', string_match: { exact: 'alpha', ignore_case: true } }],
      }),
      named('h-prefix', { prefix: '/h/prefix', headers: [{ name: 'x-v', string_match: { prefix: 'ab' } }] }),
      named('h-suffix', { prefix: '/h/suffix', headers: [{ name: 'x-v', string_match: { suffix: 'yz' } }] }),
      named('h-contains', {
        prefix: '/h/contains',
        headers: [{ name: 'x-v', string_match: { contains: 'mid' } }],
      }),
      named('h-regex', {
        prefix: '/h/regex',
        headers: [{ name: 'x-v', string_match: { safe_regex: { regex: 'v[0-9]+' } } }],
      }),
      named('h-present', { prefix: '/h/present', headers: [{ name: 'x-p', present_match: true }] }),
      named('h-absent', { prefix: '/h/absent', headers: [{ name: 'x-p', present_match: false }] }),
      named('h-range', {
        prefix: '/h/range',
        headers: [{ name: 'x-n', range_match: { start: '10', end: '20' } }],
      }),
      named('h-invert', {
        prefix: '/h/invert',
        headers: [{ name: 'x-v', string_match: { exact: 'bad' }, invert_match: true }],
      }),
      named('h-two', {
        prefix: '/h/two',
        headers: [
          { name: 'x-a', string_match: { exact: '1' } },
          { name: 'x-b', string_match: { exact: '2' } },
        ],
      }),
      named('h-host', {
        prefix: '/h/host',
        headers: [{ name: 'host', string_match: { exact: 'svc.local' } }],
      }),
      named('h-method', {
        prefix: '/h/method',
        headers: [{ name: ':method', string_match: { exact: 'POST' } }],
      }),
      named('q-exact', {
        prefix: '/q/exact',
        query_parameters: [{ name: 'debug', string_match: { exact: 'on' } }],
      }),
      named('q-present', { prefix: '/q/present', query_parameters: [{ name: 'flag', present_match: true }] }),
      named('q-regex', {
        prefix: '/q/regex',
        query_parameters: [{ name: 'id', string_match: { safe_regex: { regex: '[0-9]{3}' } } }],
      }),
      named('grpc', { prefix: '/g', grpc: {} }),
      named('fallback', { prefix: '/' }),
    ];
    h = await startHerald(
      bootstrap({
        listeners: [
          listener('main', [
            {
              filters: [
                hcmFilter({
                  routeConfig: { name: 'rc', virtual_hosts: [{ name: 'vh', domains: ['*'], routes }] },
                }),
              ],
            },
          ]),
        ],
      }),
    );
  });
  after(() => h.stop());

  const body = async (path: string, headers: Record<string, string> = {}) =>
    (await hit(h.port(), path, headers)).body;

  it('string_match exact is case-sensitive unless ignore_case', async () => {
    assert.equal(await body('/h/exact', { 'x-v': 'Alpha' }), 'h-exact');
    assert.equal(await body('/h/exact', { 'x-v': 'alpha' }), 'fallback');
    assert.equal(await body('/h/exact'), 'fallback');
    assert.equal(await body('/h/icase', { 'x-v': 'ALPHA' }), 'h-exact-ic');
    assert.equal(await body('/h/icase', { 'x-v': 'alphab' }), 'fallback');
  });

  it('string_match prefix, suffix and contains', async () => {
    assert.equal(await body('/h/prefix', { 'x-v': 'abc' }), 'h-prefix');
    assert.equal(await body('/h/prefix', { 'x-v': 'cab' }), 'fallback');
    assert.equal(await body('/h/suffix', { 'x-v': 'xyz' }), 'h-suffix');
    assert.equal(await body('/h/suffix', { 'x-v': 'yzx' }), 'fallback');
    assert.equal(await body('/h/contains', { 'x-v': 'amidst' }), 'h-contains');
    assert.equal(await body('/h/contains', { 'x-v': 'mi-d' }), 'fallback');
  });

  it('string_match safe_regex must match the whole value', async () => {
    assert.equal(await body('/h/regex', { 'x-v': 'v12' }), 'h-regex');
    assert.equal(await body('/h/regex', { 'x-v': 'v12a' }), 'fallback');
    assert.equal(await body('/h/regex', { 'x-v': 'av12' }), 'fallback');
  });

  it('present_match true and false', async () => {
    assert.equal(await body('/h/present', { 'x-p': '' }), 'h-present');
    assert.equal(await body('/h/present', { 'x-p': 'anything' }), 'h-present');
    assert.equal(await body('/h/present'), 'fallback');
    assert.equal(await body('/h/absent'), 'h-absent');
    assert.equal(await body('/h/absent', { 'x-p': '1' }), 'fallback');
  });

  it('range_match is [start, end) over integers', async () => {
    assert.equal(await body('/h/range', { 'x-n': '10' }), 'h-range');
    assert.equal(await body('/h/range', { 'x-n': '19' }), 'h-range');
    assert.equal(await body('/h/range', { 'x-n': '20' }), 'fallback');
    assert.equal(await body('/h/range', { 'x-n': '9' }), 'fallback');
    assert.equal(await body('/h/range', { 'x-n': '15.5' }), 'fallback');
    assert.equal(await body('/h/range', { 'x-n': 'abc' }), 'fallback');
  });

  it('invert_match inverts a present header, but an absent header still fails', async () => {
    assert.equal(await body('/h/invert', { 'x-v': 'good' }), 'h-invert');
    assert.equal(await body('/h/invert', { 'x-v': 'bad' }), 'fallback');
    assert.equal(await body('/h/invert'), 'fallback');
  });

  it('all header matchers of a route must match', async () => {
    assert.equal(await body('/h/two', { 'x-a': '1', 'x-b': '2' }), 'h-two');
    assert.equal(await body('/h/two', { 'x-a': '1' }), 'fallback');
    assert.equal(await body('/h/two', { 'x-a': '1', 'x-b': '3' }), 'fallback');
  });

  it('a header matcher on host matches :authority, one on :method the method', async () => {
    assert.equal(await body('/h/host', { host: 'svc.local' }), 'h-host');
    assert.equal(await body('/h/host', { host: 'other.local' }), 'fallback');
    const post = await request(h.port(), { path: '/h/method', method: 'POST', body: 'x' });
    assert.equal(post.body, 'h-method');
    assert.equal(await body('/h/method'), 'fallback');
  });

  it('query_parameters: exact, present and regex', async () => {
    assert.equal(await body('/q/exact?debug=on'), 'q-exact');
    assert.equal(await body('/q/exact?a=b&debug=on'), 'q-exact');
    assert.equal(await body('/q/exact?debug=off'), 'fallback');
    assert.equal(await body('/q/exact'), 'fallback');
    assert.equal(await body('/q/present?flag'), 'q-present');
    assert.equal(await body('/q/present?flag=1'), 'q-present');
    assert.equal(await body('/q/present?flags=1'), 'fallback');
    assert.equal(await body('/q/regex?id=123'), 'q-regex');
    assert.equal(await body('/q/regex?id=1234'), 'fallback');
  });

  it('grpc: {} matches application/grpc and application/grpc+proto content types', async () => {
    assert.equal(await body('/g/x'), 'fallback');
    assert.equal(await body('/g/x', { 'content-type': 'application/json' }), 'fallback');
    // For a gRPC request a direct response stays a plain HTTP response; only the body matters here.
    const r = await request(h.port(), {
      path: '/g/x',
      method: 'POST',
      headers: { 'content-type': 'application/grpc' },
      body: '',
    });
    assert.equal(r.body, 'grpc');
    const r2 = await request(h.port(), {
      path: '/g/x',
      method: 'POST',
      headers: { 'content-type': 'application/grpc+proto' },
      body: '',
    });
    assert.equal(r2.body, 'grpc');
  });

  it('grpc: {} does not match gRPC-Web (Envoy: only application/grpc or application/grpc+...)', async () => {
    const r = await request(h.port(), {
      path: '/g/x',
      method: 'POST',
      headers: { 'content-type': 'application/grpc-web+proto' },
      body: '',
    });
    assert.equal(r.body, 'fallback');
  });
});

describe('route matching: virtual host selection', () => {
  let h: Running;
  before(async () => {
    const vh = (name: string, domains: string[]): Obj => ({
      name,
      domains,
      routes: [named(name, { prefix: '/' })],
    });
    h = await startHerald(
      bootstrap({
        listeners: [
          listener('main', [
            {
              filters: [
                hcmFilter({
                  routeConfig: {
                    name: 'rc',
                    virtual_hosts: [
                      vh('star', ['*']),
                      vh('suffix-short', ['*.example.com']),
                      vh('suffix-long', ['*.api.example.com']),
                      vh('exact', ['www.example.com', 'Mixed.Example.org']),
                      vh('prefix', ['foo.*']),
                      vh('prefix-long', ['foo.bar.*']),
                      vh('with-port', ['ported.test:8080']),
                    ],
                  },
                }),
              ],
            },
          ]),
        ],
      }),
    );
  });
  after(() => h.stop());

  const vhost = async (host: string) => (await hit(h.port(), '/', { host })).body;

  it('an exact domain beats every wildcard', async () => {
    assert.equal(await vhost('www.example.com'), 'exact');
  });

  it('*.suffix wildcards match subdomains, longest suffix first, not the bare domain', async () => {
    assert.equal(await vhost('a.example.com'), 'suffix-short');
    assert.equal(await vhost('v1.api.example.com'), 'suffix-long');
    assert.equal(await vhost('api.example.com'), 'suffix-short');
    assert.equal(await vhost('example.com'), 'star');
  });

  it('prefix.* wildcards match, longest prefix first, after suffix wildcards', async () => {
    assert.equal(await vhost('foo.io'), 'prefix');
    assert.equal(await vhost('foo.bar.io'), 'prefix-long');
    // Suffix wildcards are searched before prefix wildcards.
    assert.equal(await vhost('foo.example.com'), 'suffix-short');
  });

  it("'*' takes anything else", async () => {
    assert.equal(await vhost('unknown.test'), 'star');
  });

  it('host matching is case-insensitive', async () => {
    assert.equal(await vhost('WWW.EXAMPLE.COM'), 'exact');
    assert.equal(await vhost('mixed.example.ORG'), 'exact');
    assert.equal(await vhost('A.Example.Com'), 'suffix-short');
  });

  it('a port in :authority is part of the name unless ignore_port_in_host_matching', async () => {
    assert.equal(await vhost('ported.test:8080'), 'with-port');
    assert.equal(await vhost('www.example.com:8080'), 'star');
  });
});

describe('route matching: no route', () => {
  let h: Running;
  before(async () => {
    h = await startHerald(
      bootstrap({
        listeners: [
          listener('main', [
            {
              filters: [
                hcmFilter({
                  statPrefix: 'nr',
                  routeConfig: {
                    name: 'rc',
                    virtual_hosts: [
                      { name: 'only', domains: ['only.test'], routes: [named('only', { prefix: '/only' })] },
                    ],
                  },
                }),
              ],
            },
          ]),
        ],
      }),
    );
  });
  after(() => h.stop());

  it('no matching route: 404 with an empty body', async () => {
    const r = await request(h.port(), { path: '/other', headers: { host: 'only.test' } });
    assert.equal(r.status, 404);
    assert.equal(r.body, '');
    assert.equal(r.headers['content-length'], '0');
    assert.equal(r.headers['content-type'], undefined);
    assert.equal(r.headers.server, 'envoy');
  });

  it('no matching virtual host: 404 with an empty body', async () => {
    const r = await request(h.port(), { path: '/only', headers: { host: 'elsewhere.test' } });
    assert.equal(r.status, 404);
    assert.equal(r.body, '');
  });

  it('404s from no route are counted in downstream_rq_4xx', async () => {
    const before4xx = (await stat(h.adminPort, 'http.nr.downstream_rq_4xx')) ?? 0;
    await request(h.port(), { path: '/nothing', headers: { host: 'only.test' } });
    assert.equal(await stat(h.adminPort, 'http.nr.downstream_rq_4xx'), before4xx + 1);
  });

  it('no route increments http.<stat_prefix>.no_route', async () => {
    const before = (await stat(h.adminPort, 'http.nr.no_route')) ?? 0;
    await request(h.port(), { path: '/nothing', headers: { host: 'only.test' } });
    await request(h.port(), { path: '/only', headers: { host: 'nope.test' } });
    assert.equal(await stat(h.adminPort, 'http.nr.no_route'), before + 2);
  });
});

describe('virtual host port handling (strip_any_host_port, strip_matching_host_port)', () => {
  let up: Upstream;
  let anyH: Running;
  let matchH: Running;
  before(async () => {
    up = await startUpstream('up', (req, res) => res.end(String(req.headers.host)));
    const cfg = (extra: string) =>
      httpBootstrap({
        hcmExtra: extra,
        domains: '"example.com"',
        routes: '- match: { prefix: / }\n  route: { cluster: up }',
        clusters: staticCluster('up', [up.port]),
      });
    anyH = await startHerald(cfg('strip_any_host_port: true'));
    matchH = await startHerald(cfg('strip_matching_host_port: true'));
  });
  after(async () => {
    await anyH.stop();
    await matchH.stop();
    await up.close();
  });

  it('strip_any_host_port: example.com:1234 matches example.com and goes upstream without the port', async () => {
    const r = await request(anyH.port(), { headers: { host: 'example.com:1234' } });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'example.com');
  });

  it("strip_matching_host_port: only the listener's own port is stripped", async () => {
    const own = await request(matchH.port(), { headers: { host: `example.com:${matchH.port()}` } });
    assert.equal(own.status, 200);
    assert.equal(own.body, 'example.com');
    const other = await request(matchH.port(), { headers: { host: 'example.com:1' } });
    assert.equal(other.status, 404);
  });
});
