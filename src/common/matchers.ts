// type.matcher.v3.StringMatcher / RegexMatcher, compiled once into predicates.
import type { Reader } from '../config/reader.js';

export type StringPredicate = (s: string) => boolean;

/**
 * Compiles an RE2 pattern for JavaScript. RE2 syntax is (nearly) a subset of
 * JS syntax; the constructs JS reads differently are rejected instead of
 * silently meaning something else. Envoy's safe_regex matches the whole string.
 */
export function compileRegex(r: Reader, key = 'regex', flags = ''): RegExp {
  const pattern = r.str(key, '');
  // (?P<name>...) is RE2's named group; JS spells it (?<name>...).
  const js = pattern.replace(/\(\?P</g, '(?<');
  if (/\\[CzZ]/.test(js))
    throw r.error(key, `RE2 construct not supported by Herald's regex engine in '${pattern}'`);
  try {
    return new RegExp(`^(?:${js})$`, `${flags}u`);
  } catch (e) {
    throw r.error(key, `invalid regex: ${(e as Error).message}`);
  }
}

/** type.matcher.v3.RegexMatcher. */
export function compileRegexMatcher(r: Reader, flags = ''): RegExp {
  const engine = r.msg('google_re2');
  if (engine) engine.ignore('max_program_size'); // RE2 program-size limits have no JS equivalent
  return compileRegex(r, 'regex', flags);
}

/** type.matcher.v3.StringMatcher. */
export function compileStringMatcher(r: Reader): StringPredicate {
  const ignoreCase = r.bool('ignore_case');
  const kind = r.oneof('exact', 'prefix', 'suffix', 'safe_regex', 'contains', 'custom');
  if (kind === 'custom') throw r.error('custom', 'custom string matchers are not supported');
  if (kind === 'safe_regex') {
    const re = compileRegexMatcher(r.msg('safe_regex')!, ignoreCase ? 'i' : '');
    return (s) => re.test(s);
  }
  const want = r.str(kind ?? 'exact', '');
  const w = ignoreCase ? want.toLowerCase() : want;
  const norm = ignoreCase ? (s: string) => s.toLowerCase() : (s: string) => s;
  switch (kind) {
    case 'prefix':
      return (s) => norm(s).startsWith(w);
    case 'suffix':
      return (s) => norm(s).endsWith(w);
    case 'contains':
      return (s) => norm(s).includes(w);
    default:
      return (s) => norm(s) === w;
  }
}
