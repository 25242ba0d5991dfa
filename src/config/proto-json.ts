// Strict proto3-JSON reader over protobufjs reflection.
//
// protobufjs's own fromObject() silently drops unknown fields and does not
// implement the JSON mapping of the well-known types, so Herald walks the
// value against the message descriptor itself. The walk:
//  - accepts field names in snake_case (proto) and lowerCamelCase (JSON);
//  - rejects unknown fields, wrong types and two members of one oneof;
//  - maps Duration ("1.5s"), Timestamp, wrappers, Struct/Value, Any (by
//    `@type`, including udpa/xds TypedStruct) as proto3 JSON does;
//  - enforces the protoc-gen-validate rules written on the fields;
//  - returns canonical JSON: snake_case keys, enum names, Durations as "Ns".
// The canonical form is a fixed point (walking it again gives it back), so
// configs can be merged and re-validated, and it is plain data that can be
// sent to worker processes.
import type protobuf from 'protobufjs';
import { parseDurationString } from './duration.js';
import type { EnvoyProtos } from './envoy-protos.js';
import { ConfigError } from './errors.js';

export { parseDurationString };

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type JsonObject = { [k: string]: Json };

export interface WalkOptions {
  /** Check PGV "required" rules (off when walking a partial overlay such as --config-yaml). */
  checkRequired: boolean;
  /** Stop collecting after this many errors. */
  maxErrors?: number;
}

const MAX_ERRORS_DEFAULT = 20;
const TYPED_STRUCT_TYPES = new Set(['udpa.type.v1.TypedStruct', 'xds.type.v3.TypedStruct']);
const WRAPPERS = new Set([
  'DoubleValue',
  'FloatValue',
  'Int64Value',
  'UInt64Value',
  'Int32Value',
  'UInt32Value',
  'BoolValue',
  'StringValue',
  'BytesValue',
]);

const INT_RANGES: Record<string, [number, number]> = {
  int32: [-2147483648, 2147483647],
  sint32: [-2147483648, 2147483647],
  sfixed32: [-2147483648, 2147483647],
  uint32: [0, 4294967295],
  fixed32: [0, 4294967295],
  int64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  sint64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  sfixed64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  uint64: [0, Number.MAX_SAFE_INTEGER],
  fixed64: [0, Number.MAX_SAFE_INTEGER],
};

type Rules = Record<string, unknown>;

/** PGV options arrive flattened (`(validate.rules).duration.gt.nanos: 1`); rebuild the tree. */
function rulesOf(options: Record<string, unknown> | undefined): Rules | undefined {
  if (!options) return undefined;
  let out: Rules | undefined;
  for (const [k, v] of Object.entries(options)) {
    if (!k.startsWith('(validate.rules).')) continue;
    out ??= {};
    const parts = k.slice('(validate.rules).'.length).split('.');
    let node: Rules = out;
    for (let i = 0; i < parts.length - 1; i++) {
      const p = parts[i]!;
      node[p] ??= {};
      node = node[p] as Rules;
    }
    node[parts[parts.length - 1]!] = v;
  }
  return out;
}

const rulesCache = new WeakMap<protobuf.Field, Rules | null>();
function fieldRules(field: protobuf.Field): Rules | undefined {
  let r = rulesCache.get(field);
  if (r === undefined) {
    r = rulesOf(field.options as Record<string, unknown> | undefined) ?? null;
    rulesCache.set(field, r);
  }
  return r ?? undefined;
}

export function snakeToCamel(s: string): string {
  return s.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return `string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  return `${typeof v} ${String(v)}`;
}

export function formatDuration(seconds: number, nanos: number): string {
  const neg = seconds < 0 || nanos < 0;
  const s = Math.abs(seconds);
  const n = Math.abs(nanos);
  const frac = n === 0 ? '' : `.${String(n).padStart(9, '0').replace(/0+$/, '')}`;
  return `${neg ? '-' : ''}${s}${frac}s`;
}

function durationNanos(d: [number, number]): number {
  return d[0] * 1e9 + d[1];
}

function ruleDurationNanos(r: unknown): number {
  if (!isPlainObject(r)) return 0;
  return Number(r.seconds ?? 0) * 1e9 + Number(r.nanos ?? 0);
}

export class ProtoJsonWalker {
  readonly errors: ConfigError[] = [];
  private readonly maxErrors: number;

  constructor(
    private readonly protos: EnvoyProtos,
    private readonly opts: WalkOptions,
  ) {
    this.maxErrors = opts.maxErrors ?? MAX_ERRORS_DEFAULT;
  }

  private fail(path: string, msg: string): undefined {
    if (this.errors.length < this.maxErrors) this.errors.push(new ConfigError(path, msg));
    return undefined;
  }

  get full(): boolean {
    return this.errors.length >= this.maxErrors;
  }

  /** Walks a message value; returns its canonical JSON or undefined after an error. */
  message(type: protobuf.Type, value: unknown, path: string): Json | undefined {
    if (this.full) return undefined;
    const wkt = this.wellKnown(type, value, path);
    if (wkt !== NOT_WKT) return wkt;
    if (!isPlainObject(value))
      return this.fail(path, `expected an object (${type.name}), got ${describe(value)}`);

    const out: JsonObject = {};
    const oneofSeen = new Map<string, string>();
    for (const [key, raw] of Object.entries(value)) {
      const field = this.findField(type, key);
      if (!field) {
        this.fail(path ? `${path}.${key}` : key, `unknown field '${key}' in ${type.fullName.slice(1)}`);
        continue;
      }
      const fpath = path ? `${path}.${field.name}` : field.name;
      if (field.name in out) {
        this.fail(fpath, 'field given twice (snake_case and camelCase spellings)');
        continue;
      }
      if (
        raw === null &&
        this.protos.resolveField(field).resolvedType?.fullName !== '.google.protobuf.Value'
      ) {
        continue; // proto3 JSON: null means "not set"
      }
      if (field.partOf) {
        const other = oneofSeen.get(field.partOf.name);
        if (other) {
          this.fail(
            fpath,
            `only one of '${other}' and '${field.name}' may be set (oneof ${field.partOf.name})`,
          );
          continue;
        }
        oneofSeen.set(field.partOf.name, field.name);
      }
      const v = this.field(field, raw, fpath);
      if (v !== undefined) out[field.name] = v;
    }

    // Required fields and required oneofs.
    if (this.opts.checkRequired) {
      for (const field of type.fieldsArray) {
        if (field.name in out || field.partOf) continue;
        const rules = fieldRules(field);
        if (rules) this.checkAbsent(field, rules, path ? `${path}.${field.name}` : field.name);
      }
      for (const oneof of type.oneofsArray) {
        const opts = oneof.options as Record<string, unknown> | undefined;
        if (opts?.['(validate.required)'] === true && !oneofSeen.has(oneof.name)) {
          this.fail(path || '(root)', `one of ${oneof.oneof.map((n) => `'${n}'`).join(', ')} is required`);
        }
      }
    }
    return out;
  }

  /** PGV validates unset proto3 scalars as their zero value; messages only when required. */
  private checkAbsent(field: protobuf.Field, rules: Rules, path: string): void {
    const kind = Object.keys(rules)[0];
    const r = kind ? rules[kind] : undefined;
    if (!isPlainObject(r) || r.ignore_empty === true) return;
    if (field.repeated || field.map) {
      if (Number(r.min_items ?? r.min_pairs ?? 0) > 0)
        this.fail(path, 'required field is missing (must not be empty)');
      return;
    }
    this.protos.resolveField(field);
    const rt = field.resolvedType;
    if (rt && 'fields' in rt) {
      if (r.required === true) this.fail(path, 'required field is missing');
      return;
    }
    if (rt) return; // enums: defined_only holds for the zero value
    const before = this.errors.length;
    this.checkScalarRules(
      field.type,
      field.type === 'string' || field.type === 'bytes' ? '' : 0,
      rules,
      path,
    );
    if (this.errors.length > before) {
      const e = this.errors[before]!;
      this.errors[before] = new ConfigError(path, `required field is missing (${e.detail})`);
    }
  }

  private findField(type: protobuf.Type, key: string): protobuf.Field | undefined {
    const f = type.fields[key];
    if (f) return f;
    // lowerCamelCase JSON name (or an explicit json_name).
    for (const field of type.fieldsArray) {
      if (snakeToCamel(field.name) === key) return field;
      const jn = (field.options as Record<string, unknown> | undefined)?.json_name;
      if (jn === key) return field;
    }
    return undefined;
  }

  private field(field: protobuf.Field, raw: unknown, path: string): Json | undefined {
    this.protos.resolveField(field);
    const rules = fieldRules(field);
    if (field.map) {
      if (!isPlainObject(raw)) return this.fail(path, `expected a map (object), got ${describe(raw)}`);
      const out: JsonObject = {};
      for (const [k, v] of Object.entries(raw)) {
        const val = this.single(field, v, `${path}[${JSON.stringify(k)}]`, undefined);
        if (val !== undefined) out[k] = val;
      }
      if (rules && isPlainObject(rules.map)) {
        const n = Object.keys(out).length;
        if (rules.map.min_pairs !== undefined && n < Number(rules.map.min_pairs))
          this.fail(path, `must have at least ${rules.map.min_pairs} entries`);
      }
      return out;
    }
    if (field.repeated) {
      // Envoy's JSON parser takes a single value where a list is expected, as a list of one
      // (Envoy's own examples rely on it, e.g. `filters:` given as one object).
      const list: unknown[] = Array.isArray(raw) ? raw : [raw];
      const itemRules =
        rules && isPlainObject(rules.repeated) ? (rules.repeated.items as Rules | undefined) : undefined;
      const out: Json[] = [];
      list.forEach((item, i) => {
        const v = this.single(field, item, `${path}[${i}]`, itemRules);
        if (v !== undefined) out.push(v);
      });
      if (rules && isPlainObject(rules.repeated)) {
        const r = rules.repeated;
        if (r.min_items !== undefined && out.length < Number(r.min_items) && this.opts.checkRequired)
          this.fail(path, `must have at least ${r.min_items} item(s)`);
        if (r.max_items !== undefined && out.length > Number(r.max_items))
          this.fail(path, `must have at most ${r.max_items} item(s)`);
        if (r.unique === true && new Set(out.map((x) => JSON.stringify(x))).size !== out.length)
          this.fail(path, 'items must be unique');
      }
      return out;
    }
    return this.single(field, raw, path, rules);
  }

  private single(
    field: protobuf.Field,
    raw: unknown,
    path: string,
    rules: Rules | undefined,
  ): Json | undefined {
    if (raw === null && field.resolvedType?.fullName !== '.google.protobuf.Value') {
      return this.fail(path, 'null is not allowed here');
    }
    const rt = field.resolvedType;
    if (rt && 'fields' in rt) {
      const v = this.message(rt as protobuf.Type, raw, path);
      if (v !== undefined && rules) this.checkMessageRules(rt as protobuf.Type, v, rules, path);
      return v;
    }
    if (rt && 'values' in rt) return this.enumValue(rt as protobuf.Enum, raw, path, rules);
    const v = this.scalar(field.type, raw, path);
    if (v !== undefined && rules) this.checkScalarRules(field.type, v, rules, path);
    return v;
  }

  private enumValue(
    e: protobuf.Enum,
    raw: unknown,
    path: string,
    rules: Rules | undefined,
  ): Json | undefined {
    let name: string | undefined;
    if (typeof raw === 'string') {
      if (raw in e.values) name = raw;
      // Envoy parses enums case-insensitively (case_insensitive_enum_parsing).
      else if (raw.toUpperCase() in e.values) name = raw.toUpperCase();
    } else if (typeof raw === 'number' && Number.isInteger(raw)) {
      name = e.valuesById[raw];
      if (name === undefined) {
        const r = rules?.enum;
        if (isPlainObject(r) && r.defined_only === true)
          return this.fail(path, `${raw} is not a value of ${e.name}`);
        return raw;
      }
    }
    if (name === undefined) {
      const allowed = Object.keys(e.values).join(', ');
      return this.fail(path, `${describe(raw)} is not a value of enum ${e.name} (one of: ${allowed})`);
    }
    const r = rules?.enum;
    if (isPlainObject(r)) {
      const num = e.values[name]!;
      if (Array.isArray(r.not_in) && (r.not_in as number[]).includes(num))
        this.fail(path, `${name} is not allowed`);
      if (Array.isArray(r.in) && !(r.in as number[]).includes(num)) this.fail(path, `${name} is not allowed`);
    }
    return name;
  }

  private scalar(kind: string, raw: unknown, path: string): Json | undefined {
    switch (kind) {
      case 'string':
        if (typeof raw !== 'string') return this.fail(path, `expected a string, got ${describe(raw)}`);
        return raw;
      case 'bool':
        if (typeof raw !== 'boolean') return this.fail(path, `expected true or false, got ${describe(raw)}`);
        return raw;
      case 'bytes':
        if (typeof raw !== 'string' || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(raw))
          return this.fail(path, `expected base64 bytes, got ${describe(raw)}`);
        return raw;
      case 'double':
      case 'float': {
        if (typeof raw === 'number') return raw;
        if (raw === 'NaN' || raw === 'Infinity' || raw === '-Infinity') return raw;
        if (typeof raw === 'string' && raw.trim() !== '' && Number.isFinite(Number(raw))) return Number(raw);
        return this.fail(path, `expected a number, got ${describe(raw)}`);
      }
      default: {
        const range = INT_RANGES[kind];
        if (!range) return this.fail(path, `unsupported scalar type ${kind}`);
        let n: number;
        if (typeof raw === 'number') n = raw;
        else if (typeof raw === 'string' && /^-?\d+$/.test(raw)) n = Number(raw);
        else return this.fail(path, `expected an integer (${kind}), got ${describe(raw)}`);
        if (!Number.isInteger(n)) return this.fail(path, `expected an integer (${kind}), got ${raw}`);
        if (n < range[0] || n > range[1]) return this.fail(path, `${n} is out of range for ${kind}`);
        return n;
      }
    }
  }

  private checkScalarRules(kind: string, v: Json, rules: Rules, path: string): void {
    const r = (rules[kind] ?? rules[kind === 'bytes' ? 'bytes' : '']) as Rules | undefined;
    if (!isPlainObject(r)) return;
    if (typeof v === 'string' && (kind === 'string' || kind === 'bytes')) {
      const len = [...v].length;
      if (r.min_len !== undefined && len < Number(r.min_len))
        this.fail(path, r.min_len === 1 ? 'must not be empty' : `must be at least ${r.min_len} characters`);
      if (r.max_len !== undefined && len > Number(r.max_len))
        this.fail(path, `must be at most ${r.max_len} characters`);
      if (r.min_bytes !== undefined && Buffer.byteLength(v) < Number(r.min_bytes))
        this.fail(path, `must be at least ${r.min_bytes} bytes`);
      if (r.max_bytes !== undefined && Buffer.byteLength(v) > Number(r.max_bytes))
        this.fail(path, `must be at most ${r.max_bytes} bytes`);
      if (typeof r.prefix === 'string' && !v.startsWith(r.prefix))
        this.fail(path, `must start with '${r.prefix}'`);
      if (Array.isArray(r.in) && !r.in.includes(v)) this.fail(path, `must be one of ${r.in.join(', ')}`);
      if (
        r.well_known_regex === 'HTTP_HEADER_NAME' &&
        r.strict !== false &&
        !/^:?[0-9a-zA-Z!#$%&'*+\-.^_|~`]+$/.test(v)
      )
        this.fail(path, `'${v}' is not a valid HTTP header name`);
      if (r.well_known_regex === 'HTTP_HEADER_VALUE' && r.strict !== false && /[\0\r\n]/.test(v))
        this.fail(path, 'is not a valid HTTP header value');
      return;
    }
    if (typeof v === 'number') this.checkNumber(v, r, path);
  }

  private checkNumber(v: number, r: Rules, path: string): void {
    if (r.const !== undefined && v !== Number(r.const)) this.fail(path, `must be ${r.const}`);
    if (r.gt !== undefined && !(v > Number(r.gt))) this.fail(path, `${v} must be greater than ${r.gt}`);
    if (r.gte !== undefined && !(v >= Number(r.gte))) this.fail(path, `${v} must be at least ${r.gte}`);
    if (r.lt !== undefined && !(v < Number(r.lt))) this.fail(path, `${v} must be less than ${r.lt}`);
    if (r.lte !== undefined && !(v <= Number(r.lte))) this.fail(path, `${v} must be at most ${r.lte}`);
    if (Array.isArray(r.in) && !r.in.map(Number).includes(v))
      this.fail(path, `${v} must be one of ${r.in.join(', ')}`);
    if (Array.isArray(r.not_in) && r.not_in.map(Number).includes(v)) this.fail(path, `${v} is not allowed`);
  }

  private checkMessageRules(type: protobuf.Type, v: Json, rules: Rules, path: string): void {
    const name = type.fullName.slice(1);
    if (name === 'google.protobuf.Duration' && isPlainObject(rules.duration) && typeof v === 'string') {
      const d = parseDurationString(v);
      if (!d) return;
      const n = durationNanos(d);
      const r = rules.duration;
      if (r.gt !== undefined && !(n > ruleDurationNanos(r.gt)))
        this.fail(path, `${v} must be greater than ${fmtRule(r.gt)}`);
      if (r.gte !== undefined && !(n >= ruleDurationNanos(r.gte)))
        this.fail(path, `${v} must be at least ${fmtRule(r.gte)}`);
      if (r.lt !== undefined && !(n < ruleDurationNanos(r.lt)))
        this.fail(path, `${v} must be less than ${fmtRule(r.lt)}`);
      if (r.lte !== undefined && !(n <= ruleDurationNanos(r.lte)))
        this.fail(path, `${v} must be at most ${fmtRule(r.lte)}`);
      return;
    }
    // Wrapper types take the rules of their inner scalar.
    if (
      name.startsWith('google.protobuf.') &&
      WRAPPERS.has(type.name) &&
      v !== null &&
      typeof v !== 'object'
    ) {
      const inner = type.fields.value!.type;
      this.checkScalarRules(inner, v, rules, path);
    }
  }

  private wellKnown(type: protobuf.Type, value: unknown, path: string): Json | undefined | typeof NOT_WKT {
    const name = type.fullName.slice(1);
    if (!name.startsWith('google.protobuf.')) return NOT_WKT;
    const short = type.name;
    if (WRAPPERS.has(short)) {
      if (isPlainObject(value))
        return this.fail(
          path,
          `expected a bare ${short.replace('Value', '').toLowerCase()} value, got an object`,
        );
      return this.scalar(type.fields.value!.type, value, path);
    }
    switch (short) {
      case 'Duration': {
        if (typeof value === 'string') {
          const d = parseDurationString(value);
          if (!d) return this.fail(path, `expected a duration such as "1.5s", got ${describe(value)}`);
          return formatDuration(d[0], d[1]);
        }
        if (isPlainObject(value)) {
          const extra = Object.keys(value).filter((k) => k !== 'seconds' && k !== 'nanos');
          if (extra.length) return this.fail(path, `unknown field '${extra[0]}' in google.protobuf.Duration`);
          const s = Number(value.seconds ?? 0);
          const n = Number(value.nanos ?? 0);
          if (!Number.isInteger(s) || !Number.isInteger(n) || Math.abs(n) > 999999999)
            return this.fail(path, 'invalid duration');
          return formatDuration(s, n);
        }
        return this.fail(path, `expected a duration such as "1.5s", got ${describe(value)}`);
      }
      case 'Timestamp':
        if (typeof value !== 'string' || Number.isNaN(Date.parse(value)))
          return this.fail(path, `expected an RFC 3339 timestamp, got ${describe(value)}`);
        return value;
      case 'FieldMask':
        if (typeof value !== 'string')
          return this.fail(path, `expected a field mask string, got ${describe(value)}`);
        return value;
      case 'Empty':
        if (!isPlainObject(value) || Object.keys(value).length)
          return this.fail(path, `expected an empty object, got ${describe(value)}`);
        return {};
      case 'Struct':
        if (!isPlainObject(value))
          return this.fail(path, `expected an object (Struct), got ${describe(value)}`);
        return value as Json;
      case 'Value':
        return value as Json;
      case 'ListValue':
        if (!Array.isArray(value)) return this.fail(path, `expected a list, got ${describe(value)}`);
        return value as Json;
      case 'Any':
        return this.any(value, path);
      default:
        return NOT_WKT;
    }
  }

  private any(value: unknown, path: string): Json | undefined {
    if (!isPlainObject(value))
      return this.fail(path, `expected an object with '@type', got ${describe(value)}`);
    const typeUrl = value['@type'];
    if (typeof typeUrl !== 'string' || typeUrl === '') return this.fail(path, "missing '@type'");
    const tpath = `${path}`;
    const type = this.protos.lookupTypeUrl(typeUrl);
    if (!type) return this.fail(tpath, `unknown @type '${typeUrl}'`);
    const fullName = type.fullName.slice(1);
    const { '@type': _t, ...rest } = value;
    if (TYPED_STRUCT_TYPES.has(fullName)) {
      // Envoy unpacks a TypedStruct into the type it names.
      const innerUrl = rest.type_url ?? rest.typeUrl;
      if (typeof innerUrl !== 'string') return this.fail(`${path}.type_url`, 'required field is missing');
      const extra = Object.keys(rest).filter((k) => !['type_url', 'typeUrl', 'value'].includes(k));
      if (extra.length) return this.fail(`${path}.${extra[0]}`, `unknown field '${extra[0]}' in ${fullName}`);
      return this.any({ '@type': innerUrl, ...((rest.value as object) ?? {}) }, path);
    }
    const canonicalUrl = `type.googleapis.com/${fullName}`;
    if (fullName.startsWith('google.protobuf.') && type.name !== 'Any') {
      const wkt = this.wellKnown(type, rest.value, `${path}.value`);
      if (wkt === undefined || wkt === NOT_WKT)
        return wkt === NOT_WKT ? this.message(type, rest, path) : undefined;
      return { '@type': canonicalUrl, value: wkt };
    }
    const inner = this.message(type, rest, path);
    if (inner === undefined || !isPlainObject(inner)) return undefined;
    return { '@type': canonicalUrl, ...inner };
  }
}

const NOT_WKT: unique symbol = Symbol('not-wkt') as never;

function fmtRule(r: unknown): string {
  return isPlainObject(r) ? formatDuration(Number(r.seconds ?? 0), Number(r.nanos ?? 0)) : String(r);
}

/** Walks `value` as message `typeName`; returns canonical JSON and the errors found. */
export function walkMessage(
  protos: EnvoyProtos,
  typeName: string,
  value: unknown,
  opts: WalkOptions,
  path = '',
): { value: JsonObject | undefined; errors: ConfigError[] } {
  const type = protos.lookupType(typeName);
  if (!type) throw new Error(`proto type ${typeName} is not available`);
  const w = new ProtoJsonWalker(protos, opts);
  const v = w.message(type, value, path);
  return { value: isPlainObject(v) ? (v as JsonObject) : undefined, errors: w.errors };
}

/** Envoy's redaction of a sensitive field: every string inside it becomes "[redacted]". */
export function redactAll(v: Json): Json {
  if (typeof v === 'string') return '[redacted]';
  if (Array.isArray(v)) return v.map(redactAll);
  if (isPlainObject(v))
    return Object.fromEntries(
      Object.entries(v).map(([k, x]) => [k, k === '@type' ? x : redactAll(x as Json)]),
    );
  return v;
}

/**
 * Returns a copy of canonical JSON with every field the protos mark
 * `(udpa.annotations.sensitive)` replaced by "[redacted]", as Envoy's
 * /config_dump does.
 */
export function redactSensitive(protos: EnvoyProtos, type: protobuf.Type, value: Json): Json {
  if (!isPlainObject(value)) return value;
  const name = type.fullName.slice(1);
  if (name === 'google.protobuf.Any') {
    const url = value['@type'];
    const inner = typeof url === 'string' ? protos.lookupTypeUrl(url) : undefined;
    return inner ? redactSensitive(protos, inner, value) : value;
  }
  if (name.startsWith('google.protobuf.')) return value;
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(value)) {
    const field = type.fields[k];
    if (!field) {
      out[k] = v as Json;
      continue;
    }
    if ((field.options as Record<string, unknown> | undefined)?.['(udpa.annotations.sensitive)'] === true) {
      out[k] = redactAll(v as Json);
      continue;
    }
    protos.resolveField(field);
    const rt = field.resolvedType;
    if (rt && 'fields' in rt) {
      const t = rt as protobuf.Type;
      if (field.map && isPlainObject(v))
        out[k] = Object.fromEntries(
          Object.entries(v).map(([mk, mv]) => [mk, redactSensitive(protos, t, mv as Json)]),
        );
      else if (Array.isArray(v)) out[k] = v.map((x) => redactSensitive(protos, t, x as Json));
      else out[k] = redactSensitive(protos, t, v as Json);
    } else {
      out[k] = v as Json;
    }
  }
  return out;
}
