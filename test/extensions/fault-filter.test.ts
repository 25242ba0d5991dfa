// envoy.filters.http.fault: aborts (FI) and delays (DI) from the filter's
// config, from a route's typed_per_filter_config, and from x-envoy-fault-*
// request headers; stats under http.<prefix>.fault.
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

const FAULT = 'type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault';

describe('fault filter', () => {
  const log = tempLog('herald-fault-');
  let up: Upstream;
  let h: Running;
  before(async () => {
    up = await startUpstream('up');
    h = await startHerald(
      httpBootstrap({
        hcmExtra: log.yaml('%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS%'),
        routes: `- match: { prefix: /boom }
  route: { cluster: up }
  typed_per_filter_config:
    envoy.filters.http.fault: { "@type": ${FAULT}, abort: { http_status: 418, percentage: { numerator: 100 } } }
- match: { prefix: /slow }
  route: { cluster: up }
  typed_per_filter_config:
    envoy.filters.http.fault: { "@type": ${FAULT}, delay: { fixed_delay: 0.2s, percentage: { numerator: 100 } } }
- match: { prefix: /never }
  route: { cluster: up }
  typed_per_filter_config:
    envoy.filters.http.fault: { "@type": ${FAULT}, abort: { http_status: 500, percentage: { numerator: 0 } } }
- match: { prefix: / }
  route: { cluster: up }`,
        clusters: `- name: up
  type: STATIC
  connect_timeout: 1s
  load_assignment: { cluster_name: up, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${up.port} } } } }] }] }`,
      }).replace(
        '          http_filters:\n',
        `          http_filters:\n          - name: envoy.filters.http.fault\n            typed_config: { "@type": ${FAULT}, abort: { header_abort: {}, percentage: { numerator: 100 } }, delay: { header_delay: {}, percentage: { numerator: 100 } } }\n`,
      ),
    );
  });
  after(async () => {
    await h.stop();
    await up.close();
  });

  it("a route's abort: 418 with FI, the upstream never asked", async () => {
    const before = up.seen.length;
    const r = await request(h.port(), { path: '/boom' });
    assert.equal(r.status, 418);
    assert.equal(r.body, 'fault filter abort');
    assert.equal(up.seen.length, before);
    assert.equal(await log.find(/^\/boom /), '/boom 418 FI fault_filter_abort');
    assert.equal(await stat(h.adminPort, 'http.test.fault.aborts_injected'), 1);
  });

  it("a route's delay: the request waits, then goes on, with DI", async () => {
    const t0 = Date.now();
    const r = await request(h.port(), { path: '/slow' });
    assert.equal(r.status, 200);
    assert.ok(Date.now() - t0 >= 180, 'delayed');
    assert.match((await log.find(/^\/slow /)) ?? '', /^\/slow 200 DI /);
    assert.equal(await stat(h.adminPort, 'http.test.fault.delays_injected'), 1);
  });

  it('0% never faults', async () => {
    for (let i = 0; i < 5; i++) assert.equal((await request(h.port(), { path: '/never' })).status, 200);
  });

  it('header_abort and header_delay: the request asks for its fault', async () => {
    assert.equal((await request(h.port(), { path: '/' })).status, 200, 'no header, no fault');
    const r = await request(h.port(), { path: '/asked', headers: { 'x-envoy-fault-abort-request': '429' } });
    assert.equal(r.status, 429);
    const t0 = Date.now();
    const d = await request(h.port(), { path: '/waited', headers: { 'x-envoy-fault-delay-request': '150' } });
    assert.equal(d.status, 200);
    assert.ok(Date.now() - t0 >= 130);
  });
});
