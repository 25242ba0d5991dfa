// Listeners and filter-chain selection over real sockets: several
// listeners, destination port, source prefix ranges, the default chain, no
// match, and an IPv6 listener.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import {
  bootstrap,
  closedPort,
  directChain,
  hasIpv6Loopback,
  listener,
  type Obj,
  rawExchange,
  sockAddr,
  statByName,
} from '../helpers/data-path.js';
import { type Running, request, startHerald, stat } from '../helpers/harness.js';

const cidr = (address_prefix: string, prefix_len: number): Obj => ({ address_prefix, prefix_len });

describe('listeners and filter chains', () => {
  let h: Running;
  let fixedPort = 0;
  let otherPort = 0;
  before(async () => {
    otherPort = await closedPort();
    // destination_port needs the listener's own port in the config: take a free one and retry if it is taken meanwhile.
    for (let attempt = 0; ; attempt++) {
      fixedPort = await closedPort();
      try {
        h = await startHerald(
          bootstrap({
            listeners: [
              listener('first', [directChain('first listener')]),
              listener('second', [directChain('second listener')]),
              listener('dport_other', [
                directChain('other port', { filter_chain_match: { destination_port: otherPort } }),
                directChain('no port criterion'),
              ]),
              {
                name: 'dport_own',
                address: sockAddr(fixedPort),
                filter_chains: [
                  directChain('other port', { filter_chain_match: { destination_port: otherPort } }),
                  directChain('own port', { filter_chain_match: { destination_port: fixedPort } }),
                  directChain('no port criterion'),
                ],
              },
              listener('source', [
                directChain('ten', { filter_chain_match: { source_prefix_ranges: [cidr('10.0.0.0', 8)] } }),
                directChain('loopback', {
                  filter_chain_match: { source_prefix_ranges: [cidr('127.0.0.0', 8)] },
                }),
              ]),
              listener('longest', [
                directChain('wide', { filter_chain_match: { source_prefix_ranges: [cidr('127.0.0.0', 8)] } }),
                directChain('narrow', {
                  filter_chain_match: { source_prefix_ranges: [cidr('127.0.0.1', 32)] },
                }),
              ]),
              listener(
                'with_default',
                [directChain('ten', { filter_chain_match: { source_prefix_ranges: [cidr('10.0.0.0', 8)] } })],
                { default_filter_chain: directChain('default chain') },
              ),
              listener('no_match', [
                directChain('ten', { filter_chain_match: { source_prefix_ranges: [cidr('10.0.0.0', 8)] } }),
              ]),
            ],
          }),
        );
        break;
      } catch (e) {
        if (attempt >= 3 || !/EADDRINUSE/.test(String((e as Error).message))) throw e;
      }
    }
  });
  after(() => h.stop());

  const body = async (name: string) => {
    const r = await request(h.port(name), { path: '/' });
    assert.equal(r.status, 200);
    return r.body;
  };

  it('two listeners in one config each serve their own chain', async () => {
    assert.notEqual(h.port('first'), h.port('second'));
    assert.equal(await body('first'), 'first listener');
    assert.equal(await body('second'), 'second listener');
  });

  it('/listeners lists both bound ports', async () => {
    const r = await request(h.adminPort, { path: '/listeners' });
    assert.match(r.body, new RegExp(`^first::127\\.0\\.0\\.1:${h.port('first')}$`, 'm'));
    assert.match(r.body, new RegExp(`^second::127\\.0\\.0\\.1:${h.port('second')}$`, 'm'));
  });

  it('destination_port for another port does not match; the chain without the criterion does', async () => {
    assert.equal(await body('dport_other'), 'no port criterion');
  });

  it("destination_port equal to the listener's port beats a chain without the criterion", async () => {
    assert.equal(h.port('dport_own'), fixedPort);
    assert.equal(await body('dport_own'), 'own port');
  });

  it('source_prefix_ranges: 127.0.0.0/8 is chosen over 10.0.0.0/8 for a loopback client', async () => {
    assert.equal(await body('source'), 'loopback');
  });

  it('source_prefix_ranges: the longest matching prefix wins', async () => {
    assert.equal(await body('longest'), 'narrow');
  });

  it('default_filter_chain takes connections no chain matches', async () => {
    assert.equal(await body('with_default'), 'default chain');
  });

  it('no chain and no default: the connection is closed and no_filter_chain_match counts it', async () => {
    const port = h.port('no_match');
    const name = `listener.127.0.0.1_${port}.no_filter_chain_match`;
    assert.equal(await stat(h.adminPort, name), 0);
    const r = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', 3000);
    assert.equal(r.closed, true);
    assert.equal(r.data.length, 0);
    assert.equal(await stat(h.adminPort, name), 1);
  });

  it('a connection closed for want of a filter chain is not counted in downstream_cx_total', async () => {
    const port = h.port('no_match');
    const before = (await stat(h.adminPort, `listener.127.0.0.1_${port}.downstream_cx_total`)) ?? 0;
    const r = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', 3000);
    assert.equal(r.closed, true);
    assert.equal(await stat(h.adminPort, `listener.127.0.0.1_${port}.downstream_cx_total`), before);
  });
});

describe('IPv6 listener', () => {
  let h: Running | undefined;
  let v6 = false;
  before(async () => {
    v6 = await hasIpv6Loopback();
    if (!v6) return;
    h = await startHerald(bootstrap({ listeners: [listener('v6', [directChain('over ipv6')], {}, '::1')] }));
  });
  after(() => h?.stop());

  it('serves HTTP on [::1]', async (t) => {
    if (!v6 || !h) return t.skip('no IPv6 loopback on this machine');
    const port = h.port('v6');
    const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.get({ host: '::1', port, path: '/', agent: false }, (res) => {
        let b = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (b += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
      });
      req.on('error', reject);
    });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'over ipv6');
    assert.equal(await statByName(h.adminPort, `listener.[__1]_${port}.downstream_cx_total`), 1);
  });
});
