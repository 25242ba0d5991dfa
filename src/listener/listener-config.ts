// config.listener.v3.Listener -> ListenerConfig.
import { type AccessLogger, compileAccessLog } from '../accesslog/access-log.js';
import type { Reader } from '../config/reader.js';
import type { FactoryContext } from '../extensions/registry.js';
import { compileAddress, type SocketAddress } from '../network/address.js';
import type { NetworkFilterFactory } from '../network/filter.js';
import { compileFilterChainMatch, type FilterChainMatch } from './filter-chain-match.js';
import type { ListenerFilterFactory } from './listener-filter.js';
import { compileTransportSocket, type DownstreamTransport } from './transport-socket.js';

export interface FilterChainConfig {
  name: string;
  match: FilterChainMatch;
  filterFactories: NetworkFilterFactory[];
  transport: DownstreamTransport | undefined;
}

export interface ListenerConfig {
  name: string;
  /** connection_balance_config.exact_balance: each connection to the worker with the fewest. */
  exactBalance: boolean;
  address: SocketAddress;
  statPrefix: string;
  filterChains: FilterChainConfig[];
  defaultFilterChain: FilterChainConfig | undefined;
  listenerFilters: ListenerFilterFactory[];
  /** per_connection_buffer_limit_bytes (default 1 MiB): bytes buffered per connection before reading pauses. */
  bufferLimitBytes: number;
  /** listener_filters_timeout (default 15 s; 0 = none). */
  listenerFiltersTimeoutMs: number;
  continueOnListenerFiltersTimeout: boolean;
  /** INBOUND / OUTBOUND / UNSPECIFIED: which listeners /drain_listeners?inboundonly drains. */
  trafficDirection: string;
  /** One entry per connection when it closes, including those no filter chain took (flag NR). */
  accessLoggers: AccessLogger[];
}

export function compileListener(r: Reader, ctx: FactoryContext, index: number): ListenerConfig {
  const address = compileAddress(r.msg('address')!);
  const name = r.str('name', '') || `listener_${index}`;
  const trafficDirection = r.enum('traffic_direction', 'UNSPECIFIED');
  // Herald's workers never bind one port twice, so SO_REUSEPORT has nothing to do (see docs/compatibility.md).
  r.ignore('enable_reuse_port');
  const listenerFilters = r
    .list('listener_filters')
    .map((lf) => ctx.compileExtension<ListenerFilterFactory>('listener_filter', lf));
  const chains = r.list('filter_chains').map((c) => compileFilterChain(c, ctx));
  const seen = new Map<string, number>();
  chains.forEach((c, i) => {
    const key = JSON.stringify(c.match, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
    const prev = seen.get(key);
    if (prev !== undefined)
      throw r.error(
        `filter_chains[${i}]`,
        `multiple filter chains with the same matching rules are defined (same as filter_chains[${prev}])`,
      );
    seen.set(key, i);
  });
  const dfc = r.msg('default_filter_chain');
  const defaultFilterChain = dfc ? compileFilterChain(dfc, ctx) : undefined;
  if (chains.length === 0 && !defaultFilterChain)
    throw r.error('filter_chains', 'a listener needs at least one filter chain');
  return {
    name,
    address,
    exactBalance: compileBalance(r),
    statPrefix: r.str('stat_prefix', ''),
    filterChains: chains,
    defaultFilterChain,
    listenerFilters,
    bufferLimitBytes: r.num('per_connection_buffer_limit_bytes', 1024 * 1024),
    listenerFiltersTimeoutMs: r.durationMs('listener_filters_timeout', 15000),
    continueOnListenerFiltersTimeout: r.bool('continue_on_listener_filters_timeout'),
    trafficDirection,
    accessLoggers: r
      .list('access_log')
      .map((a) => compileAccessLog(a, (x) => ctx.compileExtension<AccessLogger>('access_logger', x))),
  };
}

function compileFilterChain(r: Reader, ctx: FactoryContext): FilterChainConfig {
  const match = compileFilterChainMatch(r.msg('filter_chain_match'));
  const filters = r.list('filters');
  if (filters.length === 0) throw r.error('filters', 'a filter chain needs at least one network filter');
  const filterFactories = filters.map((f, i) => {
    const factory = ctx.compileExtension<NetworkFilterFactory>('network_filter', f);
    if (factory.terminal && i !== filters.length - 1)
      throw f.error('name', `terminal filter '${factory.name}' must be the last network filter`);
    if (!factory.terminal && i === filters.length - 1)
      throw f.error(
        'name',
        `the last network filter must be terminal (http_connection_manager or tcp_proxy), not '${factory.name}'`,
      );
    return factory;
  });
  const ts = r.msg('transport_socket');
  const transport = ts ? compileTransportSocket(ts, ctx) : undefined;
  return { name: r.str('name', ''), match, filterFactories, transport };
}

function compileBalance(r: Reader): boolean {
  const b = r.msg('connection_balance_config');
  if (!b) return false;
  const kind = b.oneof('exact_balance', 'extend_balance');
  if (kind === 'exact_balance') {
    b.msg('exact_balance');
    return true;
  }
  throw b.error(kind, kind ? 'only exact_balance is supported' : 'a balance type is required');
}
