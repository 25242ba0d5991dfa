// Reads canonical (already proto-validated) config while recording which
// fields were used. Every compile step reads its message through a Reader;
// when compilation ends, any field that was set but never read is an error:
// a config Herald accepts is one it honours. Fields that are safe to ignore
// are listed by name (`ignore(...)`) and documented in docs/compatibility.md.
import { parseDurationString } from './duration.js';
import { ConfigError } from './errors.js';
import type { Json, JsonObject } from './proto-json.js';

export class ReadContext {
  private readonly readers: Reader[] = [];

  root(value: JsonObject, path = ''): Reader {
    return new Reader(value, path, this);
  }

  track(r: Reader): void {
    this.readers.push(r);
  }

  /** Throws on the first field that was set but not read, in the order readers were made. */
  assertAllRead(): void {
    for (const r of this.readers) r.assertAllRead();
  }
}

export class Reader {
  /**
   * Fields read or ignored, as bits by the field's position in `value` (Object.keys order,
   * which does not change: canonical config is not modified); fields past the 31st in a Set.
   * A config can hold hundreds of thousands of readers (four per endpoint), so no Set each.
   */
  private usedBits = 0;
  private usedMore: Set<string> | undefined;
  private pathText: string | undefined;

  /**
   * `path` is this message's path; or, for a message inside another, undefined with the
   * `parent` reader, the field `key` and an `index` (a list position or map key), and the
   * path is written only when asked for (an error, an extension's context).
   */
  constructor(
    readonly value: JsonObject,
    path: string | undefined,
    private readonly ctx: ReadContext,
    private readonly parent?: Reader,
    private readonly key?: string,
    private readonly index?: number | string,
  ) {
    this.pathText = path;
    ctx.track(this);
  }

  get path(): string {
    if (this.pathText === undefined) {
      const p = this.parent!.pathOf(this.key!);
      const i = this.index;
      this.pathText =
        i === undefined ? p : typeof i === 'number' ? `${p}[${i}]` : `${p}[${JSON.stringify(i)}]`;
    }
    return this.pathText;
  }

  pathOf(key: string): string {
    const path = this.path;
    return path ? `${path}.${key}` : key;
  }

  private use(key: string): void {
    if (!Object.hasOwn(this.value, key)) return; // assertAllRead looks at set fields only
    let i = 0;
    for (const k in this.value) {
      if (k === key) break;
      i++;
    }
    if (i < 31) this.usedBits |= 1 << i;
    else (this.usedMore ??= new Set()).add(key);
  }

  private isUsed(key: string, i: number): boolean {
    return i < 31 ? (this.usedBits & (1 << i)) !== 0 : (this.usedMore?.has(key) ?? false);
  }

  error(key: string | undefined, detail: string): ConfigError {
    return new ConfigError(key === undefined ? this.path : this.pathOf(key), detail);
  }

  has(key: string): boolean {
    return this.value[key] !== undefined;
  }

  /** Marks fields as deliberately ignored (each must be documented as safe). */
  ignore(...keys: string[]): void {
    for (const k of keys) this.use(k);
  }

  raw(key: string): Json | undefined {
    this.use(key);
    return this.value[key];
  }

  str(key: string): string | undefined;
  str(key: string, def: string): string;
  str(key: string, def?: string): string | undefined {
    const v = this.raw(key);
    return typeof v === 'string' ? v : def;
  }

  num(key: string): number | undefined;
  num(key: string, def: number): number;
  num(key: string, def?: number): number | undefined {
    const v = this.raw(key);
    if (typeof v === 'number') return v;
    if (typeof v === 'string' && v !== '') return Number(v);
    return def;
  }

  bool(key: string, def = false): boolean {
    const v = this.raw(key);
    return typeof v === 'boolean' ? v : def;
  }

  /** An enum, as its name. */
  enum<T extends string>(key: string, def: T): T {
    const v = this.raw(key);
    return (typeof v === 'string' ? v : def) as T;
  }

  /** A Duration in milliseconds. */
  durationMs(key: string): number | undefined;
  durationMs(key: string, def: number): number;
  durationMs(key: string, def?: number): number | undefined {
    const v = this.raw(key);
    if (typeof v !== 'string') return def;
    const d = parseDurationString(v);
    return d ? d[0] * 1000 + d[1] / 1e6 : def;
  }

  msg(key: string): Reader | undefined {
    const v = this.raw(key);
    if (v === undefined || v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
    return new Reader(v, undefined, this.ctx, this, key);
  }

  list(key: string): Reader[] {
    const v = this.raw(key);
    if (!Array.isArray(v)) return [];
    return v.map((item, i) => new Reader(item as JsonObject, undefined, this.ctx, this, key, i));
  }

  strList(key: string): string[] {
    const v = this.raw(key);
    return Array.isArray(v) ? (v as string[]) : [];
  }

  /** A map<string, Message>. */
  map(key: string): Map<string, Reader> {
    const v = this.raw(key);
    const out = new Map<string, Reader>();
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      for (const [k, item] of Object.entries(v)) {
        out.set(k, new Reader(item as JsonObject, undefined, this.ctx, this, key, k));
      }
    }
    return out;
  }

  /** An empty config at `path` (an extension given by name with no typed_config). */
  ctxEmpty(path: string): Reader {
    return new Reader({}, path, this.ctx);
  }

  /** The `@type` of an Any that this reader wraps. */
  get typeUrl(): string | undefined {
    this.use('@type');
    const t = this.value['@type'];
    return typeof t === 'string' ? t : undefined;
  }

  /** Which member of a oneof is set (the first present of `names`). */
  oneof(...names: string[]): string | undefined {
    return names.find((n) => this.value[n] !== undefined);
  }

  assertAllRead(): void {
    let i = 0;
    for (const key in this.value) {
      const used = this.isUsed(key, i++);
      if (this.value[key] === undefined || used) continue;
      throw new ConfigError(
        this.pathOf(key),
        'is not supported by Herald (it would be ignored, so it is rejected)',
      );
    }
  }
}
