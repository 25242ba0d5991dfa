// Envoy's tag extraction: a stat name such as `cluster.backend.upstream_rq_200`
// becomes the tag-extracted name `cluster.upstream_rq` with tags
// envoy.response_code="200" and envoy.cluster_name="backend". Extraction runs
// once, when a stat is created; Prometheus output and sinks read the result.
//
// The default extractors are Envoy's (source/common/config/well_known_names.cc):
// regexes whose first group is removed from the name and whose second group
// (else the first) is the value, and token patterns (`cluster.$.**`) where `$`
// is the value, `*` one token and `**` any number of tokens.
import type { Tag } from './histogram.js';

export interface TagExtractor {
  readonly name: string;
  /** First token of the names it can match ('' = any), to skip it cheaply. */
  readonly prefix: string;
  /** Adds a tag and the [start, end) range to remove, or returns false. */
  extract(name: string, tokens: string[], tags: Tag[], remove: Array<[number, number]>): boolean;
}

const TAG_VALUE = '[^.]+';
function expand(re: string): string {
  return re
    .replaceAll('<ADDRESS>', '(?:(?:\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}|\\[[a-fA-F_\\d]+\\])_\\d+)')
    .replaceAll('<CIPHER>', '[\\w-]+')
    .replaceAll('<TLS_VERSION>', 'TLSv\\d\\.\\d')
    .replaceAll('<TAG_VALUE>', TAG_VALUE)
    .replaceAll('<ROUTE_CONFIG_NAME>', '[\\w\\-.]+')
    .replaceAll('<LISTENER_OR_CLUSTER_WITH_NAME>', '(?:listener|cluster)\\..*?');
}

/** The literal first token of an anchored regex (`^cluster\.` -> `cluster`), as Envoy derives it. */
function regexPrefix(re: string): string {
  const m = /^\^([A-Za-z0-9_]+)(?:\\\.|\(\?=\\\.\))/.exec(re);
  return m ? m[1]! : '';
}

export class RegexTagExtractor implements TagExtractor {
  readonly prefix: string;
  private readonly re: RegExp;

  constructor(
    readonly name: string,
    pattern: string,
    /** A substring the name must contain (a cheap pre-check). */
    private readonly substr = '',
    /** A value that does not count as a match (Envoy: `admin` for the listener address). */
    private readonly negativeValue = '',
  ) {
    // 'd': group positions, to remove exactly the first group.
    this.re = new RegExp(pattern, 'd');
    this.prefix = regexPrefix(pattern);
  }

  extract(name: string, _tokens: string[], tags: Tag[], remove: Array<[number, number]>): boolean {
    if (this.substr && !name.includes(this.substr)) return false;
    const m = this.re.exec(name);
    const removed = m?.[1];
    if (!m || !removed) return false;
    const value = m[2] || removed;
    if (this.negativeValue && value === this.negativeValue) return false;
    const [start, end] = m.indices![1]!;
    tags.push({ name: this.name, value });
    remove.push([start, end]);
    return true;
  }
}

export class TokenTagExtractor implements TagExtractor {
  readonly prefix: string;
  private readonly tokens: string[];
  private readonly matchIndex: number;

  constructor(
    readonly name: string,
    pattern: string,
  ) {
    this.tokens = pattern.split('.');
    this.matchIndex = this.tokens.indexOf('$');
    const first = this.tokens[0]!;
    this.prefix = first === '$' || first === '*' || first === '**' ? '' : first;
  }

  extract(_name: string, input: string[], tags: Tag[], remove: Array<[number, number]>): boolean {
    const at = this.search(input, 0, 0);
    if (at < 0) return false;
    const value = input[at]!;
    let start = 0;
    for (let i = 0; i < at; i++) start += input[i]!.length + 1;
    let end = start + value.length;
    // Remove the dot after the value, or before it when the value is the last token.
    if (at < input.length - 1) end++;
    else if (start > 0) start--;
    tags.push({ name: this.name, value });
    remove.push([start, end]);
    return true;
  }

  /** Index of the input token matched by `$`, or -1. */
  private search(input: string[], ii: number, pi: number): number {
    let found = -1;
    for (; ii < input.length && pi < this.tokens.length; ii++, pi++) {
      if (pi === this.matchIndex) {
        found = ii;
        continue;
      }
      const want = this.tokens[pi]!;
      if (want === '**') {
        if (pi === this.tokens.length - 1) return found;
        for (let k = ii; k < input.length; k++) {
          const r = this.search(input, k, pi + 1);
          if (r >= 0) return r;
        }
        return -1;
      }
      if (want !== '*' && want !== input[ii]) return -1;
    }
    return pi === this.tokens.length && ii === input.length ? found : -1;
  }
}

/** A stats_tags entry with fixed_value: the same tag on every stat. */
export interface FixedTag {
  name: string;
  value: string;
}

/** Envoy's default tag names and how each is found, in Envoy's order. */
export const DEFAULT_TAG_EXTRACTORS: ReadonlyArray<
  { name: string; regex: string; substr?: string; negative?: string } | { name: string; tokens: string }
> = [
  { name: 'envoy.response_code', regex: '_rq(_(\\d{3}))$', substr: '_rq_' },
  { name: 'envoy.response_code_class', regex: '_rq_((\\d))xx$', substr: '_rq_' },
  {
    name: 'envoy.dynamo_partition_id',
    regex:
      '^http\\.<TAG_VALUE>\\.dynamodb\\.table\\.<TAG_VALUE>\\.capacity\\.<TAG_VALUE>(\\.__partition_id=(\\w{7}))$',
    substr: '.dynamodb.table.',
  },
  {
    name: 'envoy.dynamo_operation',
    regex:
      '^http\\.<TAG_VALUE>\\.dynamodb.(?:operation|table\\.<TAG_VALUE>\\.capacity)(\\.(<TAG_VALUE>))(?:\\.|$)',
    substr: '.dynamodb.',
  },
  { name: 'envoy.mongo_callsite', tokens: 'mongo.*.collection.*.callsite.$.query.**' },
  {
    name: 'envoy.dynamo_table',
    regex: '^http\\.<TAG_VALUE>\\.dynamodb.(?:table|error)\\.((<TAG_VALUE>)\\.)',
    substr: '.dynamodb.',
  },
  { name: 'envoy.mongo_collection', tokens: 'mongo.*.collection.$.**.query.*' },
  { name: 'envoy.mongo_cmd', tokens: 'mongo.*.cmd.$.**' },
  { name: 'envoy.grpc_bridge_method', tokens: 'cluster.*.grpc.*.$.**' },
  { name: 'envoy.http_user_agent', tokens: 'http.*.user_agent.$.**' },
  { name: 'envoy.virtual_cluster', tokens: 'vhost.*.vcluster.$.**' },
  { name: 'envoy.fault_downstream_cluster', tokens: 'http.*.fault.$.**' },
  {
    name: 'envoy.ssl_cipher',
    regex: '^listener\\..*?\\.ssl\\.ciphers(\\.(<CIPHER>))$',
    substr: '.ssl.ciphers.',
  },
  {
    name: 'envoy.ssl_curve',
    regex: '^<LISTENER_OR_CLUSTER_WITH_NAME>\\.ssl\\.curves(\\.(<CIPHER>))$',
    substr: '.ssl.curves.',
  },
  {
    name: 'envoy.ssl_sigalg',
    regex: '^<LISTENER_OR_CLUSTER_WITH_NAME>\\.ssl\\.sigalgs(\\.(<CIPHER>))$',
    substr: '.ssl.sigalgs.',
  },
  {
    name: 'envoy.ssl_version',
    regex: '^<LISTENER_OR_CLUSTER_WITH_NAME>\\.ssl\\.versions(\\.(<TLS_VERSION>))$',
    substr: '.ssl.versions.',
  },
  {
    name: 'cipher_suite',
    regex: '^cluster\\.<TAG_VALUE>\\.ssl\\.ciphers(\\.(<CIPHER>))$',
    substr: '.ssl.ciphers.',
  },
  { name: 'envoy.grpc_bridge_service', tokens: 'cluster.*.grpc.$.**' },
  { name: 'envoy.tcp_prefix', tokens: 'tcp.$.**' },
  { name: 'envoy.udp_prefix', tokens: 'udp.$.**' },
  { name: 'envoy.clientssl_prefix', tokens: 'auth.clientssl.$.**' },
  { name: 'envoy.ratelimit_prefix', tokens: 'ratelimit.$.**' },
  { name: 'envoy.cluster_name', tokens: 'cluster.$.**' },
  {
    name: 'envoy.http_conn_manager_prefix',
    regex: '^listener\\..*?\\.http\\.((<TAG_VALUE>)\\.)',
    substr: '.http.',
  },
  { name: 'envoy.ext_authz_prefix', tokens: 'cluster.*.ext_authz.$.**' },
  { name: 'envoy.ext_authz_prefix', tokens: 'http.*.ext_authz.$.**' },
  { name: 'envoy.http_conn_manager_prefix', tokens: 'http.$.**' },
  {
    name: 'envoy.worker_id',
    regex: '^(?:listener\\.(?:<ADDRESS>|<TAG_VALUE>)\\.|server\\.|listener_manager\\.)worker_((\\d+)\\.)',
  },
  {
    name: 'envoy.listener_address',
    regex: '^listener\\.((<ADDRESS>|<TAG_VALUE>)\\.)',
    negative: 'admin',
  },
  { name: 'envoy.virtual_host', tokens: 'vhost.$.**' },
  { name: 'envoy.mongo_prefix', tokens: 'mongo.$.**' },
  {
    name: 'envoy.rds_route_config',
    regex: '^http\\.<TAG_VALUE>\\.rds\\.((<ROUTE_CONFIG_NAME>)\\.)\\w+?$',
    substr: '.rds.',
  },
  { name: 'envoy.route', tokens: 'vhost.*.route.$.**' },
  { name: 'envoy.thrift_prefix', tokens: 'thrift.$.**' },
  { name: 'envoy.redis_prefix', tokens: 'redis.$.**' },
  { name: 'envoy.local_http_ratelimit_prefix', tokens: '$.http_local_rate_limit.**' },
  { name: 'envoy.local_network_ratelimit_prefix', tokens: 'local_rate_limit.$.**' },
  { name: 'envoy.local_listener_ratelimit_prefix', tokens: 'listener_local_ratelimit.$.**' },
  { name: 'envoy.dns_filter_prefix', tokens: 'dns_filter.$.**' },
];

export const DEFAULT_TAG_NAMES = new Set(DEFAULT_TAG_EXTRACTORS.map((d) => d.name));

/** The default extractors for one tag name (two tag names have two each). */
export function defaultExtractors(name?: string): TagExtractor[] {
  return DEFAULT_TAG_EXTRACTORS.filter((d) => name === undefined || d.name === name).map((d) =>
    'tokens' in d
      ? new TokenTagExtractor(d.name, d.tokens)
      : new RegexTagExtractor(d.name, expand(d.regex), d.substr, d.negative),
  );
}

export interface ExtractedName {
  tagExtractedName: string;
  tags: Tag[];
}

/** Envoy's TagProducer: fixed tags first, then extractors without a prefix, then those for the first token. */
export class TagProducer {
  private readonly anyPrefix: TagExtractor[] = [];
  private readonly byPrefix = new Map<string, TagExtractor[]>();

  constructor(
    extractors: TagExtractor[],
    private readonly fixed: FixedTag[] = [],
  ) {
    for (const e of extractors) {
      if (!e.prefix) this.anyPrefix.push(e);
      else {
        let list = this.byPrefix.get(e.prefix);
        if (!list) this.byPrefix.set(e.prefix, (list = []));
        list.push(e);
      }
    }
  }

  /** Envoy's default: every default extractor, no fixed tags. */
  static defaults(): TagProducer {
    return new TagProducer(defaultExtractors());
  }

  produce(name: string): ExtractedName {
    const tags: Tag[] = this.fixed.map((f) => ({ name: f.name, value: f.value }));
    const remove: Array<[number, number]> = [];
    const tokens = name.split('.');
    for (const e of this.anyPrefix) e.extract(name, tokens, tags, remove);
    const dot = name.indexOf('.');
    const list = dot > 0 ? this.byPrefix.get(name.slice(0, dot)) : undefined;
    if (list) for (const e of list) e.extract(name, tokens, tags, remove);
    if (remove.length === 0) return { tagExtractedName: name, tags };
    const drop = new Uint8Array(name.length);
    for (const [s, e] of remove) drop.fill(1, s, e);
    let out = '';
    for (let i = 0; i < name.length; i++) if (!drop[i]) out += name[i];
    return { tagExtractedName: out, tags };
  }
}
