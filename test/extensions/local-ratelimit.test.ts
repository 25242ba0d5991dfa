// envoy.filters.http.local_ratelimit: a token bucket; past it, 429
// "local_rate_limited" with flag RL and the configured response headers when
// enforced; a route's own LocalRateLimit has its own bucket; stats under
// <stat_prefix>.http_local_rate_limit.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { tempLog } from '../helpers/access-log-file.js';
import {
  httpBootstrap,
  type Running,
  request,
  startHerald,
  startUpstream,
  stat,
  type Upstream,
} from '../helpers/harness.js';

const RL = 'type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit';
const pct = (n: number) => `{ default_value: { numerator: ${n}, denominator: HUNDRED }, runtime_key: k }`;

describe('local rate limit', () => {
  const log = tempLog('herald-rl-');
  let up: Upstream;
  let h: Running;
  before(async () => {
    up = await startUpstream('up');
    h = await startHerald(
      httpBootstrap({
        hcmExtra: log.yaml('%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS%'),
        routes: `- match: { prefix: /own }
  route: { cluster: up }
  typed_per_filter_config:
    envoy.filters.http.local_ratelimit:
      "@type": ${RL}
      stat_prefix: own
      token_bucket: { max_tokens: 1, tokens_per_fill: 1, fill_interval: 60s }
      filter_enabled: ${pct(100)}
      filter_enforced: ${pct(100)}
- match: { prefix: /shadow }
  route: { cluster: up }
  typed_per_filter_config:
    envoy.filters.http.local_ratelimit:
      "@type": ${RL}
      stat_prefix: shadow
      token_bucket: { max_tokens: 1, tokens_per_fill: 1, fill_interval: 60s }
      filter_enabled: ${pct(100)}
      filter_enforced: ${pct(0)}
- match: { prefix: / }
  route: { cluster: up }`,
        clusters: `- name: up
  type: STATIC
  connect_timeout: 1s
  load_assignment: { cluster_name: up, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${up.port} } } } }] }] }`,
      }).replace(
        '          http_filters:\n',
        `          http_filters:\n          - name: envoy.filters.http.local_ratelimit\n            typed_config: { "@type": ${RL}, stat_prefix: main, token_bucket: { max_tokens: 2, tokens_per_fill: 2, fill_interval: 0.5s }, filter_enabled: ${pct(100)}, filter_enforced: ${pct(100)}, response_headers_to_add: [{ header: { key: x-local-rate-limit, value: "true" } }], local_rate_limit_per_downstream_connection: false }\n`,
      ),
    );
  });
  after(async () => {
    await h.stop();
    await up.close();
  });

  it('past the bucket: 429 local_rate_limited, RL, the configured header; it refills', async () => {
    const codes = [];
    for (let i = 0; i < 3; i++) codes.push((await request(h.port(), { path: `/r${i}` })).status);
    assert.deepEqual(codes, [200, 200, 429]);
    const r = await request(h.port(), { path: '/r3' });
    assert.equal(r.status, 429);
    assert.equal(r.body, 'local_rate_limited');
    assert.equal(r.headers['x-local-rate-limit'], 'true');
    assert.equal(await log.find(/^\/r3 /), '/r3 429 RL local_rate_limited');
    assert.equal(await stat(h.adminPort, 'main.http_local_rate_limit.rate_limited'), 2);
    await new Promise((r) => setTimeout(r, 600));
    assert.equal((await request(h.port(), { path: '/after' })).status, 200, 'refilled');
  });

  it("a route's own bucket; enabled but not enforced only counts", async () => {
    assert.equal((await request(h.port(), { path: '/own' })).status, 200);
    assert.equal((await request(h.port(), { path: '/own' })).status, 429);
    assert.equal((await request(h.port(), { path: '/shadow' })).status, 200);
    assert.equal((await request(h.port(), { path: '/shadow' })).status, 200, 'not enforced');
    assert.equal(await stat(h.adminPort, 'shadow.http_local_rate_limit.rate_limited'), 1);
    assert.equal(await stat(h.adminPort, 'shadow.http_local_rate_limit.enforced'), 0);
  });
});
