// Bootstrap stats_config (config.metrics.v3.StatsConfig), stats_flush_interval
// and stats_flush_on_admin -> StatsOptions.
import { compileStringMatcher, type StringPredicate } from '../common/matchers.js';
import type { Reader } from '../config/reader.js';
import type { StatsOptions } from './store.js';
import {
  DEFAULT_TAG_NAMES,
  defaultExtractors,
  type FixedTag,
  RegexTagExtractor,
  type TagExtractor,
  TagProducer,
} from './tag-extractor.js';

/** Reads the stats fields of a Bootstrap. */
export function compileStatsOptions(bootstrap: Reader): StatsOptions {
  const flushOnAdmin = bootstrap.bool('stats_flush_on_admin');
  const flushIntervalMs = bootstrap.durationMs('stats_flush_interval', 5000);
  if (flushOnAdmin && bootstrap.has('stats_flush_interval'))
    throw bootstrap.error(
      'stats_flush_on_admin',
      'only one of stats_flush_interval and stats_flush_on_admin can be set',
    );
  const r = bootstrap.msg('stats_config');
  return {
    tagProducer: r ? compileTags(r) : TagProducer.defaults(),
    accept: compileMatcher(r?.msg('stats_matcher')),
    bucketRules: (r?.list('histogram_bucket_settings') ?? []).map((b) => ({
      match: compileStringMatcher(b.msg('match')!),
      buckets: (b.raw('buckets') as number[]).map(Number).sort((x, y) => x - y),
    })),
    flushIntervalMs,
    flushOnAdmin,
  };
}

/** Envoy's TagProducerImpl: the listed stats_tags first, then the defaults not overridden. */
function compileTags(r: Reader): TagProducer {
  const extractors: TagExtractor[] = [];
  const fixed: FixedTag[] = [];
  const names = new Set<string>();
  r.list('stats_tags').forEach((t, i) => {
    const name = t.str('tag_name', '');
    if (!name) throw t.error('tag_name', 'tag_name cannot be empty');
    if (names.has(name)) throw r.error(`stats_tags[${i}].tag_name`, `Tag name '${name}' specified twice.`);
    names.add(name);
    const regex = t.str('regex', '');
    if (t.has('fixed_value')) {
      fixed.push({ name, value: t.str('fixed_value', '') });
    } else if (regex) {
      try {
        extractors.push(new RegexTagExtractor(name, regex.replace(/\(\?P</g, '(?<')));
      } catch (e) {
        throw t.error('regex', `invalid regex: ${(e as Error).message}`);
      }
    } else {
      // No value: the default extractor of that name (backward compatibility in Envoy).
      if (!DEFAULT_TAG_NAMES.has(name))
        throw t.error(
          'tag_name',
          `No regex specified for tag specifier and no default regex for name: '${name}'`,
        );
      extractors.push(...defaultExtractors(name));
    }
  });
  if (r.bool('use_all_default_tags', true))
    extractors.push(...defaultExtractors().filter((e) => !names.has(e.name)));
  return new TagProducer(extractors, fixed);
}

function compileMatcher(r: Reader | undefined): (name: string) => boolean {
  if (!r) return () => true;
  const kind = r.oneof('reject_all', 'exclusion_list', 'inclusion_list');
  if (kind === 'reject_all') {
    const reject = r.bool('reject_all');
    return () => !reject;
  }
  if (!kind) return () => true;
  const list: StringPredicate[] = (r.msg(kind)?.list('patterns') ?? []).map(compileStringMatcher);
  if (kind === 'exclusion_list') return (name) => !list.some((p) => p(name));
  return (name) => list.some((p) => p(name));
}
