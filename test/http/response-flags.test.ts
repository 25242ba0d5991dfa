// Response flags and details computed where Envoy computes them, seen through
// the access log: DPE (downstream protocol error), UPE (upstream protocol
// error), IH (strict_check_headers), DT (max_stream_duration), NR, NC, UH, DC.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { tempLog } from '../helpers/access-log-file.js';
import { rawExchange } from '../helpers/data-path.js';
import {
  httpBootstrap,
  type Running,
  request,
  startHerald,
  startUpstream,
  staticCluster,
  type Upstream,
} from '../helpers/harness.js';
import { type RawUpstream, startRawUpstream } from '../helpers/raw-http.js';

describe('response flags', () => {
  const log = tempLog('herald-flags-');
  let garbage: RawUpstream;
  let slow: Upstream;
  let h: Running;
  before(async () => {
    garbage = await startRawUpstream((_req, socket) => socket.write('HTTP/1.1 banana\r\n\r\n'));
    slow = await startUpstream('slow', (req, res) => {
      req.resume();
      setTimeout(() => res.end('late'), 1000).unref();
    });
    h = await startHerald(
      httpBootstrap({
        hcmExtra: `use_remote_address: true
common_http_protocol_options: { max_stream_duration: 0.2s }
${log.yaml('%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS%')}`,
        routes: `- match: { prefix: /garbage }
  route: { cluster: garbage }
- match: { prefix: /slow }
  route: { cluster: slow }
- match: { prefix: /nocluster }
  route: { cluster_header: x-cluster }
- match: { prefix: /empty }
  route: { cluster: empty }`,
        clusters: `${staticCluster('garbage', [garbage.port])}
${staticCluster('slow', [slow.port])}
${staticCluster('empty', [])}`,
      }).replace(
        '"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router',
        '"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\n              strict_check_headers: [x-envoy-max-retries, x-envoy-retry-on]',
      ),
    );
  });
  after(async () => {
    await h.stop();
    await garbage.close();
    await slow.close();
  });

  it('DPE: a request the codec rejects is answered 400 and logged with its details', async () => {
    const r = await rawExchange(h.port(), 'GET / HTTP/1.1\r\nhost: a\r\nbad header\r\n\r\n');
    assert.match(r.data.toString(), /^HTTP\/1\.1 400 /);
    assert.match((await log.find(/ 400 DPE /)) ?? '', /^- 400 DPE http1\.codec_error|^- 400 DPE http1\./);
  });

  it('UPE: a malformed upstream response is 502 with UPE', async () => {
    const r = await request(h.port(), { path: '/garbage' });
    assert.equal(r.status, 502);
    assert.match(
      (await log.find(/^\/garbage /)) ?? '',
      /^\/garbage 502 UPE upstream_reset_before_response_started\{protocol_error\}$/,
    );
  });

  it('IH: strict_check_headers rejects a malformed control header with 400', async () => {
    const r = await request(h.port(), { path: '/slow', headers: { 'x-envoy-max-retries': 'many' } });
    assert.equal(r.status, 400);
    assert.equal(r.body, "invalid header 'x-envoy-max-retries' with value 'many'");
    assert.equal(
      await log.find(/^\/slow 400 /),
      '/slow 400 IH request_headers_failed_strict_check{x-envoy-max-retries}',
    );
  });

  it('DT: max_stream_duration ends a slow request with 408', async () => {
    const r = await request(h.port(), { path: '/slow/duration' });
    assert.equal(r.status, 408);
    assert.equal(r.body, 'downstream duration timeout');
    assert.equal(await log.find(/^\/slow\/duration /), '/slow/duration 408 DT max_duration_timeout');
  });

  it('NC and UH', async () => {
    assert.equal(
      (await request(h.port(), { path: '/nocluster', headers: { 'x-cluster': 'nope' } })).status,
      503,
    );
    assert.equal(await log.find(/^\/nocluster /), '/nocluster 503 NC cluster_not_found');
    assert.equal((await request(h.port(), { path: '/empty' })).status, 503);
    assert.equal(await log.find(/^\/empty /), '/empty 503 UH no_healthy_upstream');
  });

  it('DC: the client goes away before the response', async () => {
    await new Promise<void>((resolve) => {
      const s = net.connect(h.port(), '127.0.0.1', () => {
        s.write('GET /slow/dc HTTP/1.1\r\nhost: a\r\n\r\n');
        // A reset, not a FIN: a client that half-closes after a complete request still gets its answer.
        setTimeout(() => {
          s.resetAndDestroy();
          resolve();
        }, 50);
      });
    });
    assert.match((await log.find(/^\/slow\/dc /)) ?? '', /^\/slow\/dc 0 DC /);
  });
});
