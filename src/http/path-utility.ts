// Path normalization as Envoy's HCM does it before routing: RFC 3986 dot
// segments and percent-encoding (normalize_path), merge_slashes, and the
// handling of escaped slashes (path_with_escaped_slashes_action).

const UNRESERVED = /[A-Za-z0-9\-._~]/;

/**
 * RFC 3986 normalization of a path (no query): percent-encoded unreserved
 * characters are decoded, other escapes get upper-case hex, backslashes
 * become slashes (as the URL canonicalizer Envoy uses does), dot segments
 * are removed. Returns undefined for a path that cannot be normalized.
 */
export function normalizePath(path: string): string | undefined {
  if (!path.startsWith('/')) return undefined;
  let p = '';
  for (let i = 0; i < path.length; i++) {
    const c = path[i]!;
    if (c === '%') {
      const hex = path.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return undefined;
      const ch = String.fromCharCode(Number.parseInt(hex, 16));
      p += UNRESERVED.test(ch) ? ch : `%${hex.toUpperCase()}`;
      i += 2;
    } else if (c === '\\') {
      p += '/';
    } else {
      p += c;
    }
  }
  return removeDotSegments(p);
}

/** RFC 3986 section 5.2.4. */
export function removeDotSegments(path: string): string {
  const out: string[] = [];
  const segs = path.split('/');
  for (let i = 1; i < segs.length; i++) {
    const s = segs[i]!;
    if (s === '.') {
      if (i === segs.length - 1) out.push('');
    } else if (s === '..') {
      out.pop();
      if (i === segs.length - 1) out.push('');
    } else out.push(s);
  }
  return `/${out.join('/')}`;
}

export function mergeSlashes(path: string): string {
  return path.replace(/\/{2,}/g, '/');
}

export type EscapedSlashesAction =
  | 'IMPLEMENTATION_SPECIFIC_DEFAULT'
  | 'KEEP_UNCHANGED'
  | 'REJECT_REQUEST'
  | 'UNESCAPE_AND_REDIRECT'
  | 'UNESCAPE_AND_FORWARD';

const ESCAPED_SLASH = /%2f|%5c/i;

export function hasEscapedSlashes(path: string): boolean {
  return ESCAPED_SLASH.test(path);
}

export function unescapeSlashes(path: string): string {
  return path.replace(/%2f/gi, '/').replace(/%5c/gi, '\\');
}

export interface PathOptions {
  normalize: boolean;
  mergeSlashes: boolean;
  escapedSlashes: EscapedSlashesAction;
}

export type PathResult =
  | { kind: 'ok'; path: string }
  | { kind: 'reject'; details: string }
  | { kind: 'redirect'; location: string };

/** Applies the HCM's path options to a full :path (query kept as is). */
export function transformPath(fullPath: string, o: PathOptions): PathResult {
  if (
    !o.normalize &&
    !o.mergeSlashes &&
    (o.escapedSlashes === 'KEEP_UNCHANGED' || o.escapedSlashes === 'IMPLEMENTATION_SPECIFIC_DEFAULT')
  )
    return { kind: 'ok', path: fullPath };
  // Absolute-form and '*' targets are left alone.
  if (!fullPath.startsWith('/')) return { kind: 'ok', path: fullPath };
  const q = fullPath.search(/[?#]/);
  let path = q < 0 ? fullPath : fullPath.slice(0, q);
  const rest = q < 0 ? '' : fullPath.slice(q);
  let redirect = false;
  if (hasEscapedSlashes(path)) {
    switch (o.escapedSlashes) {
      case 'REJECT_REQUEST':
        return { kind: 'reject', details: 'path_has_escaped_slashes' };
      case 'UNESCAPE_AND_REDIRECT':
        path = unescapeSlashes(path);
        redirect = true;
        break;
      case 'UNESCAPE_AND_FORWARD':
        path = unescapeSlashes(path);
        break;
      default:
        break;
    }
  }
  if (o.normalize) {
    const n = normalizePath(path);
    if (n === undefined) return { kind: 'reject', details: 'path_normalization_failed' };
    path = n;
  }
  if (o.mergeSlashes) path = mergeSlashes(path);
  if (redirect) return { kind: 'redirect', location: path + rest };
  return { kind: 'ok', path: path + rest };
}
