// HTTP/2 over real sockets: h2c prior knowledge downstream (codec AUTO and
// HTTP2), concurrent streams, HTTP/2 upstreams, trailers, and gRPC end to
// end with @grpc/grpc-js, including Envoy's gRPC local replies.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import {
  bootstrap,
  closeH2,
  cluster,
  type EchoUpstream,
  H2_UPSTREAM,
  h2Connect,
  h2Request,
  hcmFilter,
  listener,
  type Obj,
  rawExchange,
  rawTimeline,
  simpleRouteConfig,
  startEcho,
} from '../helpers/data-path.js';
import { type Running, request, startHerald, stat } from '../helpers/harness.js';

const bytes = (b: Buffer) => b;

const ECHO_DEF: grpc.ServiceDefinition = {
  Echo: {
    path: '/test.Echo/Echo',
    requestStream: false,
    responseStream: false,
    requestSerialize: bytes,
    requestDeserialize: bytes,
    responseSerialize: bytes,
    responseDeserialize: bytes,
  },
  Fail: {
    path: '/test.Echo/Fail',
    requestStream: false,
    responseStream: false,
    requestSerialize: bytes,
    requestDeserialize: bytes,
    responseSerialize: bytes,
    responseDeserialize: bytes,
  },
  Count: {
    path: '/test.Echo/Count',
    requestStream: false,
    responseStream: true,
    requestSerialize: bytes,
    requestDeserialize: bytes,
    responseSerialize: bytes,
    responseDeserialize: bytes,
  },
};

interface UnaryResult {
  err: grpc.ServiceError | null;
  value: Buffer | undefined;
  initial: grpc.Metadata | undefined;
  status: grpc.StatusObject | undefined;
}

function unary(
  client: grpc.Client,
  method: string,
  arg: Buffer,
  md = new grpc.Metadata(),
): Promise<UnaryResult> {
  return new Promise((resolve) => {
    let initial: grpc.Metadata | undefined;
    let status: grpc.StatusObject | undefined;
    let result: { err: grpc.ServiceError | null; value: Buffer | undefined } | undefined;
    const finish = () => {
      if (result && status) resolve({ ...result, initial, status });
    };
    const call = client.makeUnaryRequest(
      method,
      bytes,
      bytes,
      arg,
      md,
      { deadline: Date.now() + 5000 },
      (err, value) => {
        result = { err, value };
        finish();
      },
    );
    call.on('metadata', (m) => {
      initial = m;
    });
    call.on('status', (s) => {
      status = s;
      finish();
    });
  });
}

describe('HTTP/2 and gRPC', () => {
  let h1up: EchoUpstream;
  let h2up: http2.Http2Server;
  let h2upPort = 0;
  let grpcServer: grpc.Server;
  let grpcPort = 0;
  let h: Running;
  const timers = new Set<NodeJS.Timeout>();

  before(async () => {
    h1up = await startEcho('h1', (s, res) => {
      if (s.url === '/h1/chunked-trailers') {
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
        res.write('part one, ');
        res.addTrailers({ 'x-checksum': 'abc123' });
        res.end('part two');
        return;
      }
      if (s.url === '/h1/no-content') {
        res.writeHead(204);
        res.end();
        return;
      }
      if (s.url === '/h1/cut') {
        // Headers and part of the promised body, then the connection goes away.
        res.writeHead(200, { 'content-length': '100' });
        res.write('only some', () => res.socket?.destroy());
        return;
      }
      const m = /delay=(\d+)/.exec(s.url);
      const send = () =>
        res.end(JSON.stringify({ url: s.url, body: s.body, headers: s.headers, version: '1.1' }));
      if (m) {
        const t = setTimeout(() => {
          timers.delete(t);
          send();
        }, Number(m[1]));
        timers.add(t);
      } else send();
    });

    // An h2c upstream: echoes the request; /trailers answers with trailers.
    h2up = http2.createServer();
    h2up.on('stream', (stream, headers) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const body = JSON.stringify({
          path: headers[':path'],
          authority: headers[':authority'],
          scheme: headers[':scheme'],
          method: headers[':method'],
          body: Buffer.concat(chunks).toString(),
          xfp: headers['x-forwarded-proto'],
          version: '2.0',
        });
        if (headers[':path'] === '/h2up/trailers') {
          stream.respond({ ':status': 200, 'content-type': 'text/plain' }, { waitForTrailers: true });
          stream.on('wantTrailers', () => stream.sendTrailers({ 'x-trailer': 'done', 'x-count': '3' }));
          stream.end('with trailers');
          return;
        }
        stream.respond({ ':status': 200, 'content-type': 'application/json', 'x-h2-upstream': 'yes' });
        stream.end(body);
      });
    });
    await new Promise<void>((r) => h2up.listen(0, '127.0.0.1', r));
    h2upPort = (h2up.address() as net.AddressInfo).port;

    grpcServer = new grpc.Server();
    grpcServer.addService(ECHO_DEF, {
      Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        const md = new grpc.Metadata();
        md.set('x-initial', 'hello');
        md.set('x-saw-client-meta', String(call.metadata.get('x-client-meta')[0] ?? ''));
        call.sendMetadata(md);
        const trailer = new grpc.Metadata();
        trailer.set('x-trailing', 'bye');
        cb(null, Buffer.concat([Buffer.from('echo:'), call.request]), trailer);
      },
      Fail: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        const md = new grpc.Metadata();
        md.set('x-why', 'because');
        cb({ code: grpc.status.FAILED_PRECONDITION, details: 'precondition not met', metadata: md });
      },
      Count: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
        const n = Number(call.request.toString());
        for (let i = 1; i <= n; i++) call.write(Buffer.from(`n${i}`));
        call.end();
      },
    });
    grpcPort = await new Promise<number>((resolve, reject) =>
      grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );

    const routes: Obj[] = [
      { match: { prefix: '/test.Echo/', grpc: {} }, route: { cluster: 'grpc', timeout: '5s' } },
      { match: { prefix: '/test.Down/' }, route: { cluster: 'empty' } },
      { match: { prefix: '/h2up' }, route: { cluster: 'h2' } },
      { match: { prefix: '/h1' }, route: { cluster: 'h1' } },
    ];
    const chain = (statPrefix: string, codec: string) => ({
      filters: [
        hcmFilter({ statPrefix, routeConfig: simpleRouteConfig(routes), extra: { codec_type: codec } }),
      ],
    });
    h = await startHerald(
      bootstrap({
        listeners: [
          listener('auto', [chain('auto', 'AUTO')]),
          listener('h2only', [chain('h2only', 'HTTP2')]),
          listener('h2idle', [
            {
              filters: [
                hcmFilter({
                  statPrefix: 'h2idle',
                  routeConfig: simpleRouteConfig(routes),
                  extra: { common_http_protocol_options: { idle_timeout: '0.3s' } },
                }),
              ],
            },
          ]),
        ],
        clusters: [
          cluster('h1', [h1up.port]),
          cluster('h2', [h2upPort], H2_UPSTREAM),
          cluster('grpc', [grpcPort], H2_UPSTREAM),
          cluster('empty', []),
        ],
      }),
    );
  });

  after(async () => {
    for (const t of timers) clearTimeout(t);
    await h.stop();
    await h1up.close();
    grpcServer.forceShutdown();
    await new Promise((r) => h2up.close(r));
  });

  it('h2c prior knowledge on codec AUTO reaches an HTTP/1.1 upstream', async () => {
    const s = await h2Connect(h.port('auto'));
    try {
      const r = await h2Request(s, { ':path': '/h1/a?b=c', ':authority': 'svc.example' });
      assert.equal(r.status, 200);
      const j = JSON.parse(r.body);
      assert.equal(j.url, '/h1/a?b=c');
      assert.equal(j.headers.host, 'svc.example');
      assert.equal(j.headers['x-forwarded-proto'], 'http');
      assert.equal(r.headers.server, 'envoy');
    } finally {
      await closeH2(s);
    }
    assert.equal(await stat(h.adminPort, 'http.auto.downstream_cx_http2_total'), 1);
  });

  it('codec AUTO waits for a preface that arrives in pieces, and an HTTP/1 head sent byte by byte', async () => {
    // A relay in front of Herald cuts the client's first bytes: 5 bytes of the preface, a pause,
    // then the rest, so the codec has to decide across reads.
    const relay = net.createServer((c) => {
      const up = net.connect(h.port('auto'), '127.0.0.1');
      let first = true;
      c.on('data', (d: Buffer) => {
        if (!first) return void up.write(d);
        first = false;
        up.write(d.subarray(0, 5));
        c.pause();
        setTimeout(() => {
          up.write(d.subarray(5));
          c.resume();
        }, 40);
      });
      up.pipe(c);
      c.on('close', () => up.destroy());
      up.on('close', () => c.destroy());
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    try {
      const s = await h2Connect((relay.address() as net.AddressInfo).port);
      try {
        for (const path of ['/h1/split-1', '/h1/split-2']) {
          const r = await h2Request(s, { ':path': path });
          assert.equal(r.status, 200);
          assert.equal(JSON.parse(r.body).url, path);
        }
      } finally {
        await closeH2(s);
      }
    } finally {
      await new Promise((r) => relay.close(r));
    }
    const head = 'GET /h1/bytewise HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';
    const text = await rawTimeline(
      h.port('auto'),
      [...head].map((ch, i) => ({ atMs: i, data: ch })),
    );
    assert.match(text, /^HTTP\/1\.1 200 /);
    assert.match(text, /"url":"\/h1\/bytewise"/);
  });

  it('HTTP/1.1 still works on codec AUTO', async () => {
    const r = await request(h.port('auto'), { path: '/h1/plain' });
    assert.equal(r.status, 200);
    assert.equal(JSON.parse(r.body).url, '/h1/plain');
  });

  it('codec HTTP2 serves h2c and a POST body crosses to the upstream', async () => {
    const s = await h2Connect(h.port('h2only'));
    try {
      const r = await h2Request(s, { ':method': 'POST', ':path': '/h1/post' }, 'h2 body');
      assert.equal(r.status, 200);
      assert.equal(JSON.parse(r.body).body, 'h2 body');
    } finally {
      await closeH2(s);
    }
  });

  it('codec HTTP2 does not answer HTTP/1.1', async () => {
    const r = await rawExchange(h.port('h2only'), 'GET /h1/x HTTP/1.1\r\nHost: a\r\n\r\n', 2000);
    assert.equal(r.closed, true);
    assert.doesNotMatch(r.data.toString('latin1'), /^HTTP\/1\.1/);
  });

  it('20 concurrent streams on one connection all complete', async () => {
    const rq0 = (await stat(h.adminPort, 'http.h2only.downstream_rq_http2_total')) ?? 0;
    const cx0 = (await stat(h.adminPort, 'http.h2only.downstream_cx_total')) ?? 0;
    const s = await h2Connect(h.port('h2only'));
    try {
      const replies = await Promise.all(
        Array.from({ length: 20 }, (_, i) => h2Request(s, { ':path': `/h1/c${i}?delay=${(i % 5) * 20}` })),
      );
      replies.forEach((r, i) => {
        assert.equal(r.status, 200);
        assert.equal(JSON.parse(r.body).url, `/h1/c${i}?delay=${(i % 5) * 20}`);
      });
    } finally {
      await closeH2(s);
    }
    assert.equal(await stat(h.adminPort, 'http.h2only.downstream_rq_http2_total'), rq0 + 20);
    assert.equal(await stat(h.adminPort, 'http.h2only.downstream_cx_total'), cx0 + 1);
  });

  it('an HTTP/2 upstream (explicit_http_config http2_protocol_options) gets HTTP/2', async () => {
    const r = await request(h.port('auto'), { path: '/h2up/x?y=1', headers: { host: 'up.example' } });
    assert.equal(r.status, 200);
    const j = JSON.parse(r.body);
    assert.equal(j.version, '2.0');
    assert.equal(j.path, '/h2up/x?y=1');
    assert.equal(j.authority, 'up.example');
    assert.equal(j.method, 'GET');
    assert.equal(j.xfp, 'http');
    assert.equal(r.headers['x-h2-upstream'], 'yes');
  });

  it('HTTP/1 chunked trailers reach an HTTP/2 client as trailers', async () => {
    const s = await h2Connect(h.port('auto'));
    try {
      const r = await h2Request(s, { ':path': '/h1/chunked-trailers' });
      assert.equal(r.status, 200);
      assert.equal(r.body, 'part one, part two');
      assert.equal(r.trailers?.['x-checksum'], 'abc123');
      // Responses without trailers end cleanly too, whatever the request.
      const [get, post, head, none] = await Promise.all([
        h2Request(s, { ':path': '/h1/small' }),
        h2Request(s, { ':method': 'POST', ':path': '/h1/small-post' }, 'x'.repeat(1000)),
        h2Request(s, { ':method': 'HEAD', ':path': '/h1/head' }),
        h2Request(s, { ':path': '/h1/no-content' }),
      ]);
      assert.equal(JSON.parse(get.body).url, '/h1/small');
      assert.equal(get.trailers, undefined);
      assert.equal(JSON.parse(post.body).body, 'x'.repeat(1000));
      assert.equal(head.status, 200);
      assert.equal(head.body, '');
      assert.equal(none.status, 204);
      assert.equal(none.body, '');
    } finally {
      await closeH2(s);
    }
  });

  it('an upstream that goes away mid-body resets the HTTP/2 stream after its headers', async () => {
    const s = await h2Connect(h.port('auto'));
    try {
      const got = await new Promise<{ status: number; body: string; error: string }>((resolve) => {
        const req = s.request({ ':path': '/h1/cut' });
        let status = 0;
        let body = '';
        req.on('response', (hd) => {
          status = Number(hd[':status']);
        });
        req.on('data', (c: Buffer) => {
          body += c.toString();
        });
        req.on('error', (e: NodeJS.ErrnoException) => resolve({ status, body, error: e.code ?? '' }));
        req.on('end', () => resolve({ status, body, error: '' }));
      });
      assert.equal(got.status, 200);
      assert.equal(got.error, 'ERR_HTTP2_STREAM_ERROR');
      // The session survives the stream reset.
      assert.equal((await h2Request(s, { ':path': '/h1/after-cut' })).status, 200);
    } finally {
      await closeH2(s);
    }
  });

  it('idle_timeout counts a connection idle only without open streams; then GOAWAY and close', async () => {
    const s = await h2Connect(h.port('h2idle'));
    let goaway = false;
    s.on('goaway', () => {
      goaway = true;
    });
    const closed = new Promise<number>((r) => s.once('close', () => r(Date.now())));
    // One stream open longer than the idle timeout: the connection is not idle meanwhile.
    const r = await h2Request(s, { ':path': '/h1/long?delay=500' });
    assert.equal(r.status, 200);
    assert.equal(goaway, false);
    const doneAt = Date.now();
    const closedAt = await closed;
    assert.equal(goaway, true);
    assert.ok(closedAt - doneAt >= 200, `closed ${closedAt - doneAt} ms after the last stream`);
  });

  it('HTTP/2 end to end passes response trailers through', async () => {
    const s = await h2Connect(h.port('auto'));
    try {
      const r = await h2Request(s, { ':path': '/h2up/trailers' });
      assert.equal(r.status, 200);
      assert.equal(r.body, 'with trailers');
      assert.equal(r.trailers?.['x-trailer'], 'done');
      assert.equal(r.trailers?.['x-count'], '3');
    } finally {
      await closeH2(s);
    }
  });

  describe('gRPC', () => {
    let client: grpc.Client;
    before(() => {
      client = new grpc.Client(`127.0.0.1:${h.port('auto')}`, grpc.credentials.createInsecure());
    });
    after(() => client.close());

    it('a unary call round-trips with metadata, initial metadata and trailers', async () => {
      const md = new grpc.Metadata();
      md.set('x-client-meta', 'm1');
      const r = await unary(client, '/test.Echo/Echo', Buffer.from('ping'), md);
      assert.equal(r.err, null);
      assert.equal(r.value?.toString(), 'echo:ping');
      assert.deepEqual(r.initial?.get('x-initial'), ['hello']);
      assert.deepEqual(r.initial?.get('x-saw-client-meta'), ['m1']);
      assert.equal(r.status?.code, grpc.status.OK);
      assert.deepEqual(r.status?.metadata.get('x-trailing'), ['bye']);
    });

    it('a non-OK status, its message and trailing metadata pass through', async () => {
      const r = await unary(client, '/test.Echo/Fail', Buffer.from('x'));
      assert.equal(r.err?.code, grpc.status.FAILED_PRECONDITION, r.err?.details);
      assert.equal(r.err?.details, 'precondition not met');
      assert.deepEqual(r.status?.metadata.get('x-why'), ['because']);
    });

    it('server streaming delivers every message in order', async () => {
      const got: string[] = [];
      const code = await new Promise<number>((resolve) => {
        const call = client.makeServerStreamRequest('/test.Echo/Count', bytes, bytes, Buffer.from('5'));
        call.on('data', (b: Buffer) => got.push(b.toString()));
        call.on('status', (s: grpc.StatusObject) => resolve(s.code));
        call.on('error', () => {});
      });
      assert.equal(code, grpc.status.OK);
      assert.deepEqual(got, ['n1', 'n2', 'n3', 'n4', 'n5']);
    });

    it('no route: UNIMPLEMENTED (12)', async () => {
      const r = await unary(client, '/nope.Svc/Call', Buffer.from('x'));
      assert.equal(r.err?.code, grpc.status.UNIMPLEMENTED, r.err?.details);
    });

    it('no healthy upstream: UNAVAILABLE (14) with the reason as grpc-message', async () => {
      const r = await unary(client, '/test.Down/Call', Buffer.from('x'));
      assert.equal(r.err?.code, grpc.status.UNAVAILABLE, r.err?.details);
      assert.equal(r.err?.details, 'no healthy upstream');
    });

    it('gRPC local replies carry grpc-status in HTTP 200 response headers', async () => {
      const s = await h2Connect(h.port('auto'));
      try {
        const r = await h2Request(s, {
          ':method': 'POST',
          ':path': '/test.Down/Call',
          'content-type': 'application/grpc',
          te: 'trailers',
        });
        assert.equal(r.status, 200);
        assert.equal(r.headers['content-type'], 'application/grpc');
        assert.equal(r.headers['grpc-status'], '14');
        assert.equal(r.headers['grpc-message'], 'no healthy upstream');
        assert.equal(r.body, '');
      } finally {
        await closeH2(s);
      }
    });

    it('gRPC local replies are trailers-only: HTTP 200, grpc-status in a HEADERS frame with END_STREAM', async () => {
      const s = await h2Connect(h.port('auto'));
      try {
        const res = await new Promise<{ headers: http2.IncomingHttpHeaders; flags: number; body: string }>(
          (resolve, reject) => {
            const req = s.request({
              ':method': 'POST',
              ':path': '/nope.Svc/Call',
              'content-type': 'application/grpc',
              te: 'trailers',
            });
            let headers: http2.IncomingHttpHeaders = {};
            let flags = 0;
            let body = '';
            req.on('response', (hd, fl) => {
              headers = hd;
              flags = fl;
            });
            req.on('data', (c: Buffer) => (body += c.toString()));
            req.on('end', () => resolve({ headers, flags, body }));
            req.on('error', reject);
            req.end();
          },
        );
        assert.equal(res.headers[':status'], 200);
        assert.equal(res.headers['content-type'], 'application/grpc');
        assert.equal(res.headers['grpc-status'], '12');
        assert.equal(res.body, '');
        assert.equal(
          res.flags & http2.constants.NGHTTP2_FLAG_END_STREAM,
          http2.constants.NGHTTP2_FLAG_END_STREAM,
        );
      } finally {
        await closeH2(s);
      }
    });
  });
});
