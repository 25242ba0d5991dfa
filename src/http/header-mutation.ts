// core.v3.HeaderValueOption lists (request_headers_to_add/remove and the
// response variants), compiled once. Values may hold command operators.

import {
  type FormatContext,
  type FormatError,
  type Headers,
  SubstitutionFormatter,
} from '../common/substitution-formatter.js';
import type { Reader } from '../config/reader.js';

type AppendAction =
  | 'APPEND_IF_EXISTS_OR_ADD'
  | 'ADD_IF_ABSENT'
  | 'OVERWRITE_IF_EXISTS_OR_ADD'
  | 'OVERWRITE_IF_EXISTS';

interface AddOp {
  key: string;
  value: SubstitutionFormatter;
  action: AppendAction;
  keepEmpty: boolean;
}

export class HeaderMutations {
  constructor(
    private readonly add: AddOp[],
    private readonly remove: string[],
  ) {}

  get empty(): boolean {
    return this.add.length === 0 && this.remove.length === 0;
  }

  apply(h: Headers, c: FormatContext): void {
    for (const k of this.remove) delete h[k];
    for (const op of this.add) {
      const v = op.value.format(c);
      if (v === '' && !op.keepEmpty) continue;
      const cur = h[op.key];
      switch (op.action) {
        case 'APPEND_IF_EXISTS_OR_ADD':
          h[op.key] = cur === undefined ? v : Array.isArray(cur) ? [...cur, v] : [cur, v];
          break;
        case 'ADD_IF_ABSENT':
          if (cur === undefined) h[op.key] = v;
          break;
        case 'OVERWRITE_IF_EXISTS_OR_ADD':
          h[op.key] = v;
          break;
        case 'OVERWRITE_IF_EXISTS':
          if (cur !== undefined) h[op.key] = v;
          break;
      }
    }
  }
}

/**
 * A config string as the bytes it stands for (UTF-8), one char per byte: header values are byte
 * strings in Herald (read and written as latin1), so a non-ASCII value leaves as its UTF-8 bytes.
 */
export function byteString(s: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the ASCII range
  return /[^\x00-\x7f]/.test(s) ? Buffer.from(s, 'utf8').toString('latin1') : s;
}

export const NO_MUTATIONS = new HeaderMutations([], []);

/** Compiles `<prefix>_headers_to_add` and `<prefix>_headers_to_remove` of a message. */
export function compileHeaderMutations(r: Reader, prefix: 'request' | 'response'): HeaderMutations {
  const add: AddOp[] = [];
  for (const o of r.list(`${prefix}_headers_to_add`)) {
    const h = o.msg('header')!;
    const key = h.str('key', '').toLowerCase();
    if (h.has('raw_value')) throw h.error('raw_value', 'raw_value is not supported; use value');
    const raw = byteString(h.str('value', ''));
    let value: SubstitutionFormatter;
    try {
      value = new SubstitutionFormatter(raw, '');
    } catch (e) {
      throw h.error('value', (e as FormatError).message);
    }
    let action = o.enum<AppendAction>('append_action', 'APPEND_IF_EXISTS_OR_ADD');
    if (o.has('append')) {
      if (o.has('append_action')) throw o.error('append', 'append and append_action cannot both be set');
      action = o.bool('append') ? 'APPEND_IF_EXISTS_OR_ADD' : 'OVERWRITE_IF_EXISTS_OR_ADD';
    }
    add.push({ key, value, action, keepEmpty: o.bool('keep_empty_value') });
  }
  const remove = r.strList(`${prefix}_headers_to_remove`).map((k) => k.toLowerCase());
  for (const k of remove) {
    if (k.startsWith(':') || k === 'host')
      throw r.error(`${prefix}_headers_to_remove`, `'${k}' may not be removed`);
  }
  return add.length || remove.length ? new HeaderMutations(add, remove) : NO_MUTATIONS;
}
