// Envoy's filter-chain selection. Criteria are tried in Envoy's order
// (destination port, destination IP, server name, transport protocol,
// application protocols, direct source IP, source type, source IP, source
// port). At each step the chains that name the criterion and match it win,
// the most specific first; if none names a matching value, the chains that do
// not name the criterion at all go on. No chain left: the default chain.
import net from 'node:net';
import type { Reader } from '../config/reader.js';

export interface ConnectionFacts {
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  serverName: string;
  transportProtocol: string;
  applicationProtocols: string[];
}

interface Cidr {
  bits: bigint;
  len: number;
  v6: boolean;
}

export interface FilterChainMatch {
  destinationPort?: number;
  prefixRanges: Cidr[];
  serverNames: string[];
  transportProtocol: string;
  applicationProtocols: string[];
  directSourcePrefixRanges: Cidr[];
  sourceType: 'ANY' | 'SAME_IP_OR_LOOPBACK' | 'EXTERNAL';
  sourcePrefixRanges: Cidr[];
  sourcePorts: number[];
}

function ipToBits(ip: string): { bits: bigint; v6: boolean } | undefined {
  let a = ip;
  if (a.startsWith('::ffff:') && net.isIPv4(a.slice(7))) a = a.slice(7);
  if (net.isIPv4(a)) {
    const p = a.split('.').map(Number);
    return { bits: BigInt(((p[0]! << 24) >>> 0) + (p[1]! << 16) + (p[2]! << 8) + p[3]!), v6: false };
  }
  if (!net.isIPv6(a)) return undefined;
  const [head, tail] = a.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  let t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  // Embedded IPv4 in the last group.
  const last = (t.length ? t : h)[(t.length ? t : h).length - 1];
  if (last && net.isIPv4(last)) {
    const p = last.split('.').map(Number);
    const repl = [((p[0]! << 8) | p[1]!).toString(16), ((p[2]! << 8) | p[3]!).toString(16)];
    if (t.length) t = [...t.slice(0, -1), ...repl];
    else h.splice(h.length - 1, 1, ...repl);
  }
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  let bits = 0n;
  for (const g of groups) bits = (bits << 16n) | BigInt(Number.parseInt(g || '0', 16));
  return { bits, v6: true };
}

function cidrMatch(c: Cidr, ip: string): boolean {
  const b = ipToBits(ip);
  if (!b || b.v6 !== c.v6) return false;
  const width = c.v6 ? 128n : 32n;
  const shift = width - BigInt(c.len);
  return b.bits >> shift === c.bits >> shift;
}

function compileCidr(r: Reader): Cidr {
  const prefix = r.str('address_prefix', '');
  const b = ipToBits(prefix);
  if (!b) throw r.error('address_prefix', `'${prefix}' is not an IP address`);
  const max = b.v6 ? 128 : 32;
  const len = r.has('prefix_len') ? r.num('prefix_len', max) : max;
  if (len > max) throw r.error('prefix_len', `${len} is longer than ${max}`);
  return { bits: b.bits, len, v6: b.v6 };
}

export function compileFilterChainMatch(r: Reader | undefined): FilterChainMatch {
  const m: FilterChainMatch = {
    prefixRanges: [],
    serverNames: [],
    transportProtocol: '',
    applicationProtocols: [],
    directSourcePrefixRanges: [],
    sourceType: 'ANY',
    sourcePrefixRanges: [],
    sourcePorts: [],
  };
  if (!r) return m;
  const dp = r.num('destination_port');
  if (dp !== undefined) m.destinationPort = dp;
  m.prefixRanges = r.list('prefix_ranges').map(compileCidr);
  m.serverNames = r.strList('server_names').map((s) => s.toLowerCase());
  m.transportProtocol = r.str('transport_protocol', '');
  m.applicationProtocols = r.strList('application_protocols');
  m.directSourcePrefixRanges = r.list('direct_source_prefix_ranges').map(compileCidr);
  m.sourceType = r.enum('source_type', 'ANY');
  m.sourcePrefixRanges = r.list('source_prefix_ranges').map(compileCidr);
  m.sourcePorts = ((r.raw('source_ports') as number[] | undefined) ?? []).map(Number);
  return m;
}

/** A score > 0 when the criterion is named and matches (higher is more specific), 0 when it is not named, -1 on mismatch. */
type Criterion = (m: FilterChainMatch, c: ConnectionFacts) => number;

function bestCidr(ranges: Cidr[], ip: string): number {
  if (ranges.length === 0) return 0;
  let best = -1;
  for (const r of ranges) if (cidrMatch(r, ip)) best = Math.max(best, r.len + 1);
  return best;
}

function serverNameScore(names: string[], sni: string): number {
  if (names.length === 0) return 0;
  const host = sni.toLowerCase();
  let best = -1;
  for (const n of names) {
    if (n === host) return 1000; // exact beats any wildcard
    if (n.startsWith('*.') && host.endsWith(n.slice(1)) && host.length > n.length - 1)
      best = Math.max(best, n.length);
  }
  return best;
}

function isLoopbackOrSame(c: ConnectionFacts): boolean {
  const r = c.remoteAddress.replace(/^::ffff:/, '');
  return r === c.localAddress.replace(/^::ffff:/, '') || r.startsWith('127.') || r === '::1';
}

/** Envoy's criteria in order, each with whether a match names it. */
const CRITERIA: Array<{ score: Criterion; named: (m: FilterChainMatch) => boolean }> = [
  {
    score: (m, c) => (m.destinationPort === undefined ? 0 : m.destinationPort === c.localPort ? 1 : -1),
    named: (m) => m.destinationPort !== undefined,
  },
  { score: (m, c) => bestCidr(m.prefixRanges, c.localAddress), named: (m) => m.prefixRanges.length > 0 },
  { score: (m, c) => serverNameScore(m.serverNames, c.serverName), named: (m) => m.serverNames.length > 0 },
  {
    score: (m, c) => (m.transportProtocol === '' ? 0 : m.transportProtocol === c.transportProtocol ? 1 : -1),
    named: (m) => m.transportProtocol !== '',
  },
  {
    score: (m, c) =>
      m.applicationProtocols.length === 0
        ? 0
        : m.applicationProtocols.some((p) => c.applicationProtocols.includes(p))
          ? 1
          : -1,
    named: (m) => m.applicationProtocols.length > 0,
  },
  {
    score: (m, c) => bestCidr(m.directSourcePrefixRanges, c.remoteAddress),
    named: (m) => m.directSourcePrefixRanges.length > 0,
  },
  {
    score: (m, c) =>
      m.sourceType === 'ANY' ? 0 : (m.sourceType === 'SAME_IP_OR_LOOPBACK') === isLoopbackOrSame(c) ? 1 : -1,
    named: (m) => m.sourceType !== 'ANY',
  },
  {
    score: (m, c) => bestCidr(m.sourcePrefixRanges, c.remoteAddress),
    named: (m) => m.sourcePrefixRanges.length > 0,
  },
  {
    score: (m, c) => (m.sourcePorts.length === 0 ? 0 : m.sourcePorts.includes(c.remotePort) ? 1 : -1),
    named: (m) => m.sourcePorts.length > 0,
  },
];

/**
 * The criteria some chain of `chains` names, computed once per chain list: a criterion no chain
 * names scores 0 everywhere and cannot change the outcome, and most listeners (one chain, no
 * match) then need no work per connection.
 */
const namedCriteria = new WeakMap<readonly { match: FilterChainMatch }[], Criterion[]>();
function criteriaFor(chains: readonly { match: FilterChainMatch }[]): Criterion[] {
  let list = namedCriteria.get(chains);
  if (!list) {
    list = CRITERIA.filter((c) => chains.some((ch) => c.named(ch.match))).map((c) => c.score);
    namedCriteria.set(chains, list);
  }
  return list;
}

export function selectFilterChain<T extends { match: FilterChainMatch }>(
  chains: readonly T[],
  c: ConnectionFacts,
): T | undefined {
  let candidates = chains as T[];
  for (const crit of criteriaFor(chains)) {
    let best = 0;
    let winners: T[] = [];
    const unnamed: T[] = [];
    for (const ch of candidates) {
      const s = crit(ch.match, c);
      if (s === 0) unnamed.push(ch);
      else if (s > best) {
        best = s;
        winners = [ch];
      } else if (s === best && s > 0) winners.push(ch);
    }
    candidates = winners.length ? winners : unnamed;
    if (candidates.length === 0) return undefined;
  }
  return candidates[0];
}
