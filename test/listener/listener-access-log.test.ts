// Listener access logs: one entry per connection when it closes, including a
// connection no filter chain accepted (flag NR), as Envoy logs them.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bootstrap, directChain, listener } from '../helpers/data-path.js';
import { type Running, request, startHerald } from '../helpers/harness.js';

const FILE_LOG = 'type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog';

async function lines(file: string, n: number): Promise<string[]> {
  const end = Date.now() + 5000;
  for (;;) {
    const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
    const got = text.split('\n').filter(Boolean);
    if (got.length >= n || Date.now() > end) return got;
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('listener access_log', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-lal-'));
  const served = path.join(dir, 'served.log');
  const rejected = path.join(dir, 'rejected.log');
  const dflt = path.join(dir, 'default.log');
  let h: Running;
  const accessLog = (p: string, format?: string) => [
    {
      name: 'envoy.access_loggers.file',
      typed_config: {
        '@type': FILE_LOG,
        path: p,
        ...(format ? { log_format: { text_format_source: { inline_string: format } } } : {}),
      },
    },
  ];
  before(async () => {
    h = await startHerald(
      bootstrap({
        listeners: [
          listener('served', [directChain('hello')], {
            access_log: accessLog(
              served,
              '%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT%\n',
            ),
          }),
          // Only clients from 10.0.0.0/8 have a chain: a loopback client matches none.
          listener(
            'picky',
            [
              directChain('no', {
                filter_chain_match: { source_prefix_ranges: [{ address_prefix: '10.0.0.0', prefix_len: 8 }] },
              }),
            ],
            {
              access_log: [
                ...accessLog(
                  rejected,
                  '%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %RESPONSE_FLAGS% %BYTES_RECEIVED%\n',
                ),
                ...accessLog(dflt),
              ],
            },
          ),
        ],
        clusters: [],
      }),
    );
  });
  after(async () => {
    await h.stop();
  });

  it('logs a served connection when it closes, with its bytes', async () => {
    assert.equal((await request(h.port('served'), { path: '/x' })).body, 'hello');
    const got = await lines(served, 1);
    assert.equal(got.length, 1);
    const m = /^127\.0\.0\.1 - (\d+) (\d+)$/.exec(got[0]!);
    assert.ok(m, got[0]);
    assert.ok(Number(m[1]) > 0 && Number(m[2]) > 0);
  });

  it('logs a connection no filter chain matched with flag NR', async () => {
    const s = net.connect(h.port('picky'), '127.0.0.1');
    await new Promise<void>((resolve) => s.once('close', () => resolve()));
    assert.deepEqual(await lines(rejected, 1), ['127.0.0.1 NR 0']);
    const d = await lines(dflt, 1);
    assert.match(d[0]!, /^\[\d{4}-\d\d-\d\dT[\d:.]+Z\] "- - -" 0 NR 0 0 \d+ - "-" "-" "-" "-" "-"$/);
  });

  it('rejects an unknown field under a listener access_log like any other', async () => {
    await assert.rejects(
      startHerald(
        bootstrap({
          listeners: [
            listener('l', [directChain('x')], {
              access_log: [
                {
                  name: 'envoy.access_loggers.file',
                  typed_config: { '@type': FILE_LOG, path: served, bogus: 1 },
                },
              ],
            }),
          ],
          clusters: [],
        }),
      ),
      /bogus/,
    );
  });
});
