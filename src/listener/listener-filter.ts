// Listener filters inspect a new connection before a filter chain is chosen.
// Inspecting filters (tls_inspector, http_inspector) look at the first bytes;
// the listener reads them, offers them to each filter, and puts them back
// for whatever comes next, so nothing is consumed.
import type { ConnectionFacts } from './filter-chain-match.js';

export enum InspectResult {
  /** The filter has what it needs (or knows the bytes are not for it). */
  Done = 0,
  /** Not enough bytes yet. */
  NeedMoreData = 1,
}

export interface ListenerFilter {
  /** Called with all bytes read so far; may set facts (server name, protocols). */
  inspect(data: Buffer, facts: ConnectionFacts): InspectResult;
  /** Most bytes this filter will ever want (Envoy's max read size). */
  readonly maxBytes: number;
}

export interface ListenerFilterFactory {
  name: string;
  createFilter(): ListenerFilter;
}
