// The admin API's piecewise JSON: the same text as JSON.stringify(value, null, 2), sensitive
// fields redacted as redactSensitive() does, and pieces written with backpressure.
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { describe, it } from 'node:test';
import { jsonChunks, LazyList, type Out, Typed, writeChunks } from '../../src/admin/json-stream.js';
import { BOOTSTRAP_TYPE, loadBootstrap } from '../../src/config/bootstrap-loader.js';
import { envoyProtos } from '../../src/config/envoy-protos.js';
import { type Json, redactSensitive } from '../../src/config/proto-json.js';

/** A deterministic pseudo-random JSON-ish value (with what JSON.stringify skips or maps). */
function randomValue(seed: number): unknown {
  let s = seed;
  const rnd = () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
  const leaves = [
    null,
    true,
    false,
    0,
    -1.5,
    1e21,
    'text',
    '',
    'quote " and \\ and \n\u2028 é',
    undefined,
    NaN,
  ];
  const gen = (d: number): unknown => {
    const r = rnd();
    if (d > 5 || r < 0.3) return leaves[Math.floor(rnd() * leaves.length)];
    const n = Math.floor(rnd() * (d < 2 ? 40 : 6));
    if (r < 0.6) return Array.from({ length: n }, () => gen(d + 1));
    const o: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) o[rnd() < 0.1 ? String(i) : `k${i}${rnd() < 0.1 ? '"' : ''}`] = gen(d + 1);
    if (rnd() < 0.1) o.fn = () => 1;
    if (rnd() < 0.1) o.date = new Date(0);
    return o;
  };
  return gen(0);
}

const joined = (v: Out, o?: { size?: number; small?: number }) => [...jsonChunks(v, o)].join('');

describe('jsonChunks', () => {
  it('writes what JSON.stringify(v, null, 2) writes, whatever is walked and whatever stringified', () => {
    for (let seed = 1; seed <= 60; seed++) {
      const v = randomValue(seed);
      const want = JSON.stringify(v, null, 2) ?? '';
      assert.equal(joined(v as Out), want, `seed ${seed}`);
      assert.equal(joined(v as Out, { small: 0, size: 100 }), want, `seed ${seed}, all walked`);
    }
    for (const v of [null, 1, 'x', [], {}, [[]], { a: {} }, [undefined], { a: undefined }])
      assert.equal(joined(v as Out, { small: 0 }), JSON.stringify(v, null, 2));
  });

  it('writes a LazyList as the array of its items, made while writing', () => {
    let made = 0;
    const items = function* () {
      for (let i = 0; i < 1000; i++) {
        made++;
        yield { i, skipped: undefined };
      }
    };
    const chunks = jsonChunks({ list: new LazyList(items), empty: new LazyList(() => []) }, { size: 1024 });
    const first = chunks.next();
    assert.ok(!first.done && first.value.length >= 1024);
    assert.ok(made < 100, `only what the first piece needs was made (${made})`);
    const text = first.value + [...chunks].join('');
    const want = {
      list: Array.from({ length: 1000 }, (_, i) => ({ i, skipped: undefined })),
      empty: [],
    };
    assert.equal(text, JSON.stringify(want, null, 2));
  });

  it('gives pieces of about the size asked for', () => {
    const v = { items: Array.from({ length: 20000 }, (_, i) => ({ i, name: `item-${i}` })) };
    const pieces = [...jsonChunks(v, { size: 4096 })];
    assert.ok(pieces.length > 100, `${pieces.length} pieces`);
    for (const p of pieces.slice(0, -1)) assert.ok(p.length >= 4096 && p.length < 4096 + 1024, `${p.length}`);
    assert.equal(pieces.join(''), JSON.stringify(v, null, 2));
  });

  it('redacts a Typed message as redactSensitive does, at any size', () => {
    const canonical = loadBootstrap({
      configYaml: `
static_resources:
  secrets:
  - name: s1
    tls_certificate:
      certificate_chain: { inline_string: "CERT" }
      private_key: { inline_string: "KEY" }
  - name: s2
    generic_secret: { secret: { inline_string: "GENERIC" } }
  clusters:
  - name: tls
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http_protocol_options: {} }
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        common_tls_context:
          tls_certificates:
          - certificate_chain: { inline_string: "CERT2" }
            private_key: { inline_string: "KEY2" }
            password: { inline_string: "PW" }
    load_assignment:
      cluster_name: tls
      endpoints:
      - lb_endpoints:
${Array.from({ length: 300 }, (_, i) => `        - endpoint: { address: { socket_address: { address: 10.0.${i >> 8}.${i & 255}, port_value: 80 } } }`).join('\n')}
`,
    });
    const protos = envoyProtos();
    const type = protos.lookupType(BOOTSTRAP_TYPE)!;
    const want = JSON.stringify(redactSensitive(protos, type, canonical), null, 2);
    for (const KEY of ['"KEY"', '"KEY2"', '"PW"', '"GENERIC"']) assert.ok(!want.includes(KEY), KEY);
    assert.ok(want.includes('[redacted]'));
    const typed = new Typed(protos, type, canonical);
    assert.equal(joined(typed), want, 'default sizes');
    assert.equal(joined(typed, { small: 0, size: 512 }), want, 'every message walked');
    assert.equal(joined(typed, { small: 2048 }), want, 'some walked, some stringified');
    const any = new Typed(protos, protos.lookupType('google.protobuf.Any')!, {
      '@type': `type.googleapis.com/${BOOTSTRAP_TYPE}`,
      ...canonical,
    } as Json);
    assert.equal(
      joined(any, { small: 0 }),
      JSON.stringify(redactSensitive(protos, protos.lookupType('google.protobuf.Any')!, any.value), null, 2),
    );
  });
});

describe('writeChunks', () => {
  async function serve(
    handler: (res: http.ServerResponse) => Promise<void>,
  ): Promise<{ port: number; close: () => Promise<void> }> {
    const server = http.createServer((_req, res) => void handler(res).catch(() => {}));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return {
      port: (server.address() as net.AddressInfo).port,
      close: async () => {
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
      },
    };
  }

  it('makes no more pieces than the socket takes while the client does not read', async () => {
    let made = 0;
    let finished = false;
    const total = 200_000;
    const srv = await serve(async (res) => {
      res.writeHead(200);
      await writeChunks(
        res,
        jsonChunks(
          new LazyList(function* () {
            for (let i = 0; i < total; i++) {
              made++;
              yield { i, pad: 'x'.repeat(100) };
            }
          }),
        ),
      );
      finished = true;
    });
    const res = await new Promise<http.IncomingMessage>((resolve) =>
      http.get({ port: srv.port, host: '127.0.0.1', agent: false }, resolve),
    );
    res.pause();
    await new Promise((r) => setTimeout(r, 300));
    // Socket buffers hold a few MB at most; the whole answer is ~25 MB.
    assert.ok(made < total / 2, `${made} items made while paused`);
    assert.ok(!finished);
    let bytes = 0;
    res.on('data', (c: Buffer) => {
      bytes += c.length;
    });
    res.resume();
    await new Promise((r) => res.on('end', r));
    assert.equal(made, total);
    assert.ok(finished);
    assert.ok(bytes > 20_000_000);
    await srv.close();
  });

  it('stops making pieces when the client goes away', async () => {
    let made = 0;
    let closed!: () => void;
    const done = new Promise<void>((r) => {
      closed = r;
    });
    const srv = await serve(async (res) => {
      res.writeHead(200);
      await writeChunks(
        res,
        jsonChunks(
          new LazyList(function* () {
            try {
              for (;;) {
                made++;
                yield { made, pad: 'x'.repeat(100) };
              }
            } finally {
              closed();
            }
          }),
        ),
      );
    });
    const req = http.get({ port: srv.port, host: '127.0.0.1', agent: false }, (res) => {
      res.once('data', () => req.destroy());
    });
    req.on('error', () => {});
    await done;
    const at = made;
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(made, at, 'no item made after the generator was closed');
    await srv.close();
  });

  it('turns the event loop between pieces', async () => {
    let ticks = 0;
    let running = true;
    const tick = () => {
      ticks++;
      if (running) setImmediate(tick);
    };
    let pieces = 0;
    const srv = await serve(async (res) => {
      res.writeHead(200);
      await writeChunks(
        res,
        (function* () {
          for (let i = 0; i < 200; i++) {
            pieces++;
            yield 'x'.repeat(1000);
          }
        })(),
      );
    });
    setImmediate(tick);
    await new Promise<void>((resolve) =>
      http.get({ port: srv.port, host: '127.0.0.1', agent: false }, (res) => {
        res.resume();
        res.on('end', resolve);
      }),
    );
    running = false;
    assert.equal(pieces, 200);
    assert.ok(ticks >= 200, `${ticks} turns for 200 pieces`);
    await srv.close();
  });
});
