// path_config_source: Envoy's dynamic-config-fs example, with its paths and
// hosts pointed at test fixtures. Files moved into place change routing live;
// a bad file is rejected and the last good config keeps serving.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Server } from '../../src/server/server.js';
import { request, startUpstream, type Upstream } from '../helpers/harness.js';

const EXAMPLE = path.resolve(process.cwd(), '../shared/envoy-configs/dynamic-config-fs');

async function until(what: string, cond: () => Promise<boolean>, timeoutMs = 10000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Writes next to the target, then renames over it: how `mv` and `sed -i` replace a file. */
function moveIntoPlace(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

describe("path_config_source: Envoy's dynamic-config-fs example", { skip: !fs.existsSync(EXAMPLE) }, () => {
  let a: Upstream;
  let b: Upstream;
  let dir: string;
  let h: Server;
  let cds: string;
  let lds: string;
  before(async () => {
    a = await startUpstream('a');
    b = await startUpstream('b');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-fs-'));
    const envoy = fs
      .readFileSync(path.join(EXAMPLE, 'envoy.yaml'), 'utf8')
      .replaceAll('/var/lib/envoy', dir)
      .replace('address: 0.0.0.0', 'address: 127.0.0.1')
      .replace('port_value: 19000', 'port_value: 0');
    cds = fs
      .readFileSync(path.join(EXAMPLE, 'configs/cds.yaml'), 'utf8')
      .replace('address: service1', 'address: 127.0.0.1')
      .replace('port_value: 8080', `port_value: ${a.port}`);
    lds = fs
      .readFileSync(path.join(EXAMPLE, 'configs/lds.yaml'), 'utf8')
      .replace('address: 0.0.0.0', 'address: 127.0.0.1')
      .replace('port_value: 10000', 'port_value: 0');
    fs.writeFileSync(path.join(dir, 'cds.yaml'), cds);
    fs.writeFileSync(path.join(dir, 'lds.yaml'), lds);
    h = await Server.create({ configYaml: envoy });
    await h.start();
  });
  after(async () => {
    await h.stop();
    await a.close();
    await b.close();
  });

  it('serves the listener and cluster from the files', async () => {
    const r = await request(h.listenerPort('listener_0'), { path: '/' });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'a');
  });

  it('a cluster file moved into place moves traffic', async () => {
    moveIntoPlace(path.join(dir, 'cds.yaml'), cds.replace(`port_value: ${a.port}`, `port_value: ${b.port}`));
    await until(
      'traffic on b',
      async () => (await request(h.listenerPort('listener_0'), { path: '/' })).body === 'b',
    );
  });

  it('a listener file moved into place changes routing, on the same port', async () => {
    const port = h.listenerPort('listener_0');
    moveIntoPlace(
      path.join(dir, 'lds.yaml'),
      lds.replace(
        '            routes:\n',
        '            routes:\n            - match: { prefix: "/hello" }\n              direct_response: { status: 200, body: { inline_string: "hello from the file" } }\n',
      ),
    );
    await until(
      'new route',
      async () => (await request(port, { path: '/hello' })).body === 'hello from the file',
    );
    assert.equal(h.listenerPort('listener_0'), port);
    assert.equal((await request(port, { path: '/' })).body, 'b');
  });

  it('a bad file is rejected and the last good config stays', async () => {
    moveIntoPlace(
      path.join(dir, 'cds.yaml'),
      cds.replace('type: STRICT_DNS', 'type: STRICT_DNS\n  no_such_field: 1'),
    );
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await request(h.listenerPort('listener_0'), { path: '/' })).body, 'b');
  });
});
