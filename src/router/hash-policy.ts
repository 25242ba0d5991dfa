// RouteAction.hash_policy: the request hash for consistent-hash load
// balancers (RING_HASH, MAGLEV), combined as Envoy does: for each policy that
// yields a value, hash = rotl64(hash, 1) ^ xxHash64(value); a terminal policy
// that yields a value ends the walk.
import { compileRegexMatcher } from '../common/matchers.js';
import { randomBytes } from '../common/random.js';
import type { Headers } from '../common/substitution-formatter.js';
import { xxHash64 } from '../common/xxhash.js';
import type { Reader } from '../config/reader.js';

const MASK64 = (1n << 64n) - 1n;

export interface HashInput {
  headers: Headers;
  /** The client's address (without port), for source_ip. */
  sourceIp: string;
  query: string;
}

export interface CookieToSet {
  name: string;
  value: string;
  ttlS: number;
  path: string;
}

type Policy = {
  terminal: boolean;
  /** Returns the value to hash, or undefined when this policy does not apply. */
  value(i: HashInput, setCookie: (c: CookieToSet) => void): string | undefined;
};

export class HashPolicy {
  constructor(private readonly policies: Policy[]) {}

  /** The request's hash, or undefined when no policy applied. `setCookie` receives a generated cookie. */
  hash(i: HashInput, setCookie: (c: CookieToSet) => void): bigint | undefined {
    let h: bigint | undefined;
    for (const p of this.policies) {
      const v = p.value(i, setCookie);
      if (v === undefined) continue;
      const x = xxHash64(v);
      h = h === undefined ? x : (((h << 1n) | (h >> 63n)) & MASK64) ^ x;
      if (p.terminal) break;
    }
    return h;
  }
}

function headerValue(h: Headers, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v.join(',') : v;
}

function cookieValue(h: Headers, name: string): string | undefined {
  const raw = headerValue(h, 'cookie');
  if (!raw) return undefined;
  for (const part of raw.split(/;\s*|,\s*/)) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name)
      return part
        .slice(eq + 1)
        .trim()
        .replace(/^"(.*)"$/, '$1');
  }
  return undefined;
}

let compiledAny = false;
/** Whether any route of this process's config has a hash policy (the server then loads xxHash). */
export function hashPolicyCompiled(): boolean {
  return compiledAny;
}

export function compileHashPolicy(list: Reader[]): HashPolicy | undefined {
  if (list.length === 0) return undefined;
  compiledAny = true;
  return new HashPolicy(
    list.map((r): Policy => {
      const terminal = r.bool('terminal');
      const kind = r.oneof('header', 'cookie', 'connection_properties', 'query_parameter', 'filter_state');
      switch (kind) {
        case 'header': {
          const hr = r.msg('header')!;
          const raw = hr.str('header_name', '').toLowerCase();
          const name = raw === 'host' ? ':authority' : raw;
          const rw = hr.msg('regex_rewrite');
          let rewrite: ((s: string) => string) | undefined;
          if (rw) {
            const re = compileRegexMatcher(rw.msg('pattern')!);
            const pattern = new RegExp(re.source.slice(4, -2), 'gu');
            const sub = rw
              .str('substitution', '')
              .replace(/\$/g, '$$$$')
              .replace(/\\(\d)/g, '$$$1');
            rewrite = (s) => s.replace(pattern, sub);
          }
          return {
            terminal,
            value: (i) => {
              const v = headerValue(i.headers, name);
              return v === undefined ? undefined : rewrite ? rewrite(v) : v;
            },
          };
        }
        case 'cookie': {
          const c = r.msg('cookie')!;
          const name = c.str('name', '');
          const ttlMs = c.durationMs('ttl');
          const path = c.str('path', '/');
          if (c.has('attributes')) throw c.error('attributes', 'cookie attributes are not supported yet');
          return {
            terminal,
            value: (i, setCookie) => {
              const v = cookieValue(i.headers, name);
              if (v !== undefined) return v;
              if (ttlMs === undefined) return undefined;
              // No cookie yet and a TTL: Envoy makes one up and sets it on the response.
              const made = randomBytes(8).toString('hex');
              setCookie({ name, value: made, ttlS: Math.floor(ttlMs / 1000), path });
              return made;
            },
          };
        }
        case 'connection_properties': {
          const cp = r.msg('connection_properties')!;
          if (!cp.bool('source_ip')) return { terminal, value: () => undefined };
          return { terminal, value: (i) => i.sourceIp };
        }
        case 'query_parameter': {
          const name = r.msg('query_parameter')!.str('name', '');
          return {
            terminal,
            value: (i) => {
              for (const part of i.query.split('&')) {
                const eq = part.indexOf('=');
                const k = eq < 0 ? part : part.slice(0, eq);
                if (k === name) return eq < 0 ? '' : part.slice(eq + 1);
              }
              return undefined;
            },
          };
        }
        default:
          throw r.error(
            kind,
            kind
              ? `hash policy '${kind}' is not supported`
              : 'a hash policy needs header, cookie, connection_properties or query_parameter',
          );
      }
    }),
  );
}

export function formatSetCookie(c: CookieToSet): string {
  return `${c.name}="${c.value}"; Max-Age=${c.ttlS}; Path=${c.path}; HttpOnly`;
}
