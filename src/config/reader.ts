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
  private readonly used = new Set<string>();

  constructor(
    readonly value: JsonObject,
    readonly path: string,
    private readonly ctx: ReadContext,
  ) {
    ctx.track(this);
  }

  pathOf(key: string): string {
    return this.path ? `${this.path}.${key}` : key;
  }

  error(key: string | undefined, detail: string): ConfigError {
    return new ConfigError(key === undefined ? this.path : this.pathOf(key), detail);
  }

  has(key: string): boolean {
    return this.value[key] !== undefined;
  }

  /** Marks fields as deliberately ignored (each must be documented as safe). */
  ignore(...keys: string[]): void {
    for (const k of keys) this.used.add(k);
  }

  raw(key: string): Json | undefined {
    this.used.add(key);
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
    return new Reader(v, this.pathOf(key), this.ctx);
  }

  list(key: string): Reader[] {
    const v = this.raw(key);
    if (!Array.isArray(v)) return [];
    return v.map((item, i) => new Reader(item as JsonObject, `${this.pathOf(key)}[${i}]`, this.ctx));
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
        out.set(k, new Reader(item as JsonObject, `${this.pathOf(key)}[${JSON.stringify(k)}]`, this.ctx));
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
    this.used.add('@type');
    const t = this.value['@type'];
    return typeof t === 'string' ? t : undefined;
  }

  /** Which member of a oneof is set (the first present of `names`). */
  oneof(...names: string[]): string | undefined {
    return names.find((n) => this.value[n] !== undefined);
  }

  assertAllRead(): void {
    for (const key of Object.keys(this.value)) {
      if (this.value[key] === undefined || this.used.has(key)) continue;
      throw new ConfigError(
        this.pathOf(key),
        'is not supported by Herald (it would be ignored, so it is rejected)',
      );
    }
  }
}
