// More of Envoy's command operators, through a real access log:
// %CONNECTION_ID%, %STREAM_ID%, %UPSTREAM_LOCAL_ADDRESS%, %UPSTREAM_CONNECTION_ID%,
// %UPSTREAM_TRANSPORT_FAILURE_REASON%, %REQUESTED_SERVER_NAME%, %TRAILER(x)%,
// %CONNECTION_TERMINATION_DETAILS%.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { tempLog } from '../helpers/access-log-file.js';
import { closedPort, rawExchange } from '../helpers/data-path.js';
import {
  httpBootstrap,
  type Running,
  request,
  startHerald,
  startUpstream,
  staticCluster,
  type Upstream,
} from '../helpers/harness.js';

describe('access log: connection, stream, upstream and trailer operators', () => {
  const log = tempLog('herald-ops-');
  let up: Upstream;
  let h: Running;
  before(async () => {
    up = await startUpstream('up', (req, res) => {
      req.resume();
      res.writeHead(200, { trailer: 'x-checksum', 'transfer-encoding': 'chunked' });
      res.write('body');
      res.addTrailers({ 'x-checksum': 'abc123' });
      res.end();
    });
    const dead = await closedPort();
    h = await startHerald(
      httpBootstrap({
        hcmExtra: log.yaml(
          '%REQ(:PATH)% cx=%CONNECTION_ID% stream=%STREAM_ID% up=%UPSTREAM_LOCAL_ADDRESS% upcx=%UPSTREAM_CONNECTION_ID% fail=%UPSTREAM_TRANSPORT_FAILURE_REASON% sni=%REQUESTED_SERVER_NAME% trailer=%TRAILER(x-checksum)% term=%CONNECTION_TERMINATION_DETAILS%',
        ),
        routes: `- match: { prefix: /dead }
  route: { cluster: dead }
- match: { prefix: / }
  route: { cluster: up }`,
        clusters: `${staticCluster('up', [up.port])}
${staticCluster('dead', [dead])}`,
      }),
    );
  });
  after(async () => {
    await h.stop();
    await up.close();
  });

  it('a proxied request: connection ids, the request id as stream id, the upstream side, the trailer', async () => {
    const r = await request(h.port(), { path: '/ok', headers: { 'x-request-id': 'rid-42' } });
    assert.equal(r.status, 200);
    const line = (await log.find(/^\/ok /)) ?? '';
    assert.match(
      line,
      /^\/ok cx=\d+ stream=rid-42 up=127\.0\.0\.1:\d+ upcx=\d+ fail=- sni=- trailer=abc123 term=-$/,
    );
    const [cx, upcx] = [/cx=(\d+)/.exec(line)![1], /upcx=(\d+)/.exec(line)![1]];
    assert.notEqual(cx, upcx, 'downstream and upstream connections have different ids');
  });

  it('a refused upstream: the transport failure reason', async () => {
    assert.equal((await request(h.port(), { path: '/dead' })).status, 503);
    assert.match((await log.find(/^\/dead /)) ?? '', /fail=delayed connect error: 111 /);
  });

  it('a request the codec rejects: connection termination details', async () => {
    await rawExchange(h.port(), 'GET / HTTP/1.1\r\nhost: a\r\nbad header\r\n\r\n');
    assert.match((await log.find(/^- cx=/)) ?? '', /term=http1\./);
  });
});
