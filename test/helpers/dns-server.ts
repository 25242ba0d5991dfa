// A tiny authoritative DNS server over UDP for tests: A records with a TTL,
// changeable while it runs. Other queries (AAAA, ...) get NOERROR with no answer.
import dgram from 'node:dgram';

export interface DnsServer {
  port: number;
  /** name -> [IPv4 address, TTL seconds] */
  records: Map<string, [string, number]>;
  queries: number;
  close(): Promise<void>;
}

function readName(msg: Buffer, offset: number): { name: string; end: number } {
  const labels: string[] = [];
  let i = offset;
  while (msg[i]! > 0) {
    const len = msg[i]!;
    labels.push(msg.subarray(i + 1, i + 1 + len).toString('latin1'));
    i += len + 1;
  }
  return { name: labels.join('.').toLowerCase(), end: i + 1 };
}

export async function startDnsServer(): Promise<DnsServer> {
  const sock = dgram.createSocket('udp4');
  const state: DnsServer = {
    port: 0,
    records: new Map(),
    queries: 0,
    close: () => new Promise((r) => sock.close(() => r())),
  };
  sock.on('message', (msg, rinfo) => {
    state.queries++;
    const { name, end } = readName(msg, 12);
    const qtype = msg.readUInt16BE(end);
    const question = msg.subarray(12, end + 4);
    const rec = qtype === 1 ? state.records.get(name) : undefined;
    const header = Buffer.alloc(12);
    header.writeUInt16BE(msg.readUInt16BE(0), 0); // id
    header.writeUInt16BE(0x8180, 2); // response, recursion available, NOERROR
    header.writeUInt16BE(1, 4); // one question
    header.writeUInt16BE(rec ? 1 : 0, 6);
    const parts = [header, question];
    if (rec) {
      const answer = Buffer.alloc(16);
      answer.writeUInt16BE(0xc00c, 0); // the name in the question
      answer.writeUInt16BE(1, 2); // A
      answer.writeUInt16BE(1, 4); // IN
      answer.writeUInt32BE(rec[1], 6); // TTL
      answer.writeUInt16BE(4, 10);
      answer.set(rec[0].split('.').map(Number), 12);
      parts.push(answer);
    }
    sock.send(Buffer.concat(parts), rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  state.port = sock.address().port;
  return state;
}
