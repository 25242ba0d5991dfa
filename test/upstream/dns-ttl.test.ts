// STRICT_DNS with respect_dns_ttl: the next resolution follows the records'
// TTL (a DNS change is picked up within it), where dns_refresh_rate alone
// would wait much longer. Resolution goes to a DNS server the test runs.
import assert from 'node:assert/strict';
import dns from 'node:dns';
import http from 'node:http';
import type net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { type DnsServer, startDnsServer } from '../helpers/dns-server.js';
import { httpBootstrap, type Running, request, startHerald } from '../helpers/harness.js';

async function listenOn(address: string, port: number, name: string): Promise<http.Server> {
  const s = http.createServer((_q, r) => r.end(name));
  await new Promise<void>((r) => s.listen(port, address, r));
  return s;
}

describe('respect_dns_ttl', () => {
  let dnsServer: DnsServer;
  let a: http.Server;
  let b: http.Server;
  let h: Running;
  const servers = dns.getServers();
  before(async () => {
    dnsServer = await startDnsServer();
    dns.setServers([`127.0.0.1:${dnsServer.port}`]);
    a = await listenOn('127.0.0.1', 0, 'a');
    const port = (a.address() as net.AddressInfo).port;
    b = await listenOn('127.0.0.2', port, 'b');
    dnsServer.records.set('svc.herald.test', ['127.0.0.1', 1]);
    dnsServer.records.set('slow.herald.test', ['127.0.0.1', 1]);
    const cluster = (name: string, host: string, extra: string) => `- name: ${name}
  type: STRICT_DNS
  connect_timeout: 1s
  dns_lookup_family: V4_ONLY
  dns_refresh_rate: 60s
${extra}
  load_assignment:
    cluster_name: ${name}
    endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: ${host}, port_value: ${port} } } } }] }]`;
    h = await startHerald(
      httpBootstrap({
        routes: `- match: { prefix: /ttl }
  route: { cluster: ttl }
- match: { prefix: /fixed }
  route: { cluster: fixed }`,
        clusters: `${cluster('ttl', 'svc.herald.test', '  respect_dns_ttl: true')}
${cluster('fixed', 'slow.herald.test', '')}`,
      }),
    );
  });
  after(async () => {
    await h.stop();
    dns.setServers(servers);
    await dnsServer.close();
    a.close();
    b.close();
  });

  it("a DNS change is followed within the records' TTL, not dns_refresh_rate", async () => {
    assert.equal((await request(h.port(), { path: '/ttl' })).body, 'a');
    dnsServer.records.set('svc.herald.test', ['127.0.0.2', 1]);
    dnsServer.records.set('slow.herald.test', ['127.0.0.2', 1]);
    const deadline = Date.now() + 5000;
    let body = '';
    while (Date.now() < deadline && body !== 'b') {
      await new Promise((r) => setTimeout(r, 200));
      body = (await request(h.port(), { path: '/ttl' })).body;
    }
    assert.equal(body, 'b', 'the TTL-driven cluster moved to the new address');
    // The cluster without respect_dns_ttl resolves every 60 s: it has not moved (and, resolved
    // through the system resolver, never asked this DNS server).
    assert.equal((await request(h.port(), { path: '/fixed' })).status, 503);
  });
});
