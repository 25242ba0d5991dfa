// xDS resources: type URLs, and the two conversions every xDS message needs:
// proto3 JSON <-> protobuf bytes inside a google.protobuf.Any, through the
// Envoy protos that src/config/envoy-protos.ts loads lazily by package.
//
// protobufjs's fromObject/toObject do not implement the proto3 JSON mapping of
// the well-known types (Duration "1s", bare wrapper values, Struct, Any by
// `@type`), so both directions walk the descriptors here. JSON going out is
// first validated by Herald's strict walker (src/config/proto-json.ts), so a
// management server never sends what an Envoy would reject as malformed, and
// JSON coming in is canonical (snake_case, enum names, "1.5s") and can be
// handed to the same walker and compilers as a bootstrap.
import { createHash } from 'node:crypto';
import protobuf from 'protobufjs';
import { type EnvoyProtos, envoyProtos, TYPE_URL_PREFIX, typeNameOfUrl } from '../config/envoy-protos.js';
import { ConfigErrors } from '../config/errors.js';
import {
  formatDuration,
  type Json,
  type JsonObject,
  parseDurationString,
  walkMessage,
} from '../config/proto-json.js';

import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE } from './type-urls.js';

export { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE };

export type XdsShortName = 'lds' | 'rds' | 'cds' | 'eds' | 'sds';

interface ResourceTypeInfo {
  short: XdsShortName;
  /** The field that names a resource of this type. */
  nameField: string;
  /**
   * State-of-the-world responses for LDS and CDS carry every subscribed
   * resource, so one that is absent was removed; for RDS, EDS and SDS absence
   * means nothing (xds_protocol.rst, "Resource types and their semantics").
   */
  fullState: boolean;
  /** An empty first subscription means "everything" (legacy wildcard). */
  wildcardByDefault: boolean;
}

export const RESOURCE_TYPES: ReadonlyMap<string, ResourceTypeInfo> = new Map([
  [LISTENER_TYPE, { short: 'lds', nameField: 'name', fullState: true, wildcardByDefault: true }],
  [ROUTE_TYPE, { short: 'rds', nameField: 'name', fullState: false, wildcardByDefault: false }],
  [CLUSTER_TYPE, { short: 'cds', nameField: 'name', fullState: true, wildcardByDefault: true }],
  [ENDPOINT_TYPE, { short: 'eds', nameField: 'cluster_name', fullState: false, wildcardByDefault: false }],
  [SECRET_TYPE, { short: 'sds', nameField: 'name', fullState: false, wildcardByDefault: false }],
]);

/**
 * Envoy's ADS order for pushing changes ("make before break"): clusters before
 * their endpoints, listeners before their routes.
 */
export const PUSH_ORDER: readonly string[] = [
  CLUSTER_TYPE,
  ENDPOINT_TYPE,
  LISTENER_TYPE,
  ROUTE_TYPE,
  SECRET_TYPE,
];

export function typeInfo(typeUrl: string): ResourceTypeInfo | undefined {
  return RESOURCE_TYPES.get(typeUrl);
}

export function shortName(typeUrl: string): XdsShortName | undefined {
  return RESOURCE_TYPES.get(typeUrl)?.short;
}

/** A google.protobuf.Any as protobufjs holds it. */
export interface EncodedAny {
  type_url: string;
  value: Uint8Array;
}

/** A resource ready to send: its name, its Any, and a version derived from its bytes. */
export interface EncodedResource {
  name: string;
  any: EncodedAny;
  /** Hash of the encoded bytes: equal resources have equal versions (delta xDS). */
  version: string;
}

/** A resource received: its name, its canonical proto3 JSON with `@type`, and the version of its bytes. */
export interface DecodedResource {
  name: string;
  json: JsonObject;
  version: string;
}

export function bytesVersion(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('base64url').slice(0, 22);
}

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

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

/**
 * Resolves every field reachable from a message type so protobufjs can build
 * its encoder and decoder. Types referenced through imports are loaded with
 * their file; only Any contents are resolved on demand.
 */
const resolvedTypes = new WeakSet<protobuf.Type>();
export function ensureResolved(protos: EnvoyProtos, type: protobuf.Type): void {
  if (resolvedTypes.has(type)) return;
  resolvedTypes.add(type);
  for (const field of type.fieldsArray) {
    protos.resolveField(field);
    const rt = field.resolvedType;
    if (rt instanceof protobuf.Type) ensureResolved(protos, rt);
  }
}

export function lookupResolved(protos: EnvoyProtos, fullName: string): protobuf.Type {
  const type = protos.lookupType(fullName);
  if (!type) throw new Error(`proto type ${fullName} is not available`);
  ensureResolved(protos, type);
  return type;
}

// ---------------------------------------------------------------------------
// JSON -> protobuf

/**
 * Turns canonical proto3 JSON (as src/config/proto-json.ts produces it) into
 * the object shape protobufjs's fromObject takes: well-known types expanded,
 * Any contents encoded to bytes.
 */
export function jsonToMessageObject(protos: EnvoyProtos, type: protobuf.Type, json: Json): unknown {
  const name = type.fullName.slice(1);
  if (name.startsWith('google.protobuf.')) {
    const wkt = wellKnownToObject(protos, type, json);
    if (wkt !== NOT_WKT) return wkt;
  }
  if (!isObject(json)) return json;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(json)) {
    const field = type.fields[key];
    if (!field) throw new Error(`unknown field '${key}' in ${name}`);
    protos.resolveField(field);
    const rt = field.resolvedType;
    if (!(rt instanceof protobuf.Type)) {
      out[key] = value;
      continue;
    }
    if (field.map && isObject(value)) {
      out[key] = Object.fromEntries(
        Object.entries(value).map(([k, v]) => [k, jsonToMessageObject(protos, rt, v as Json)]),
      );
    } else if (field.repeated && Array.isArray(value)) {
      out[key] = value.map((v) => jsonToMessageObject(protos, rt, v));
    } else {
      out[key] = jsonToMessageObject(protos, rt, value as Json);
    }
  }
  return out;
}

const NOT_WKT: unique symbol = Symbol('not-wkt') as never;

// protobufjs's built-in struct.proto names Value's fields in camelCase.
function valueToObject(v: Json): unknown {
  if (v === null) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(valueToObject) } };
  return { structValue: structToObject(v) };
}

function structToObject(v: JsonObject): unknown {
  return { fields: Object.fromEntries(Object.entries(v).map(([k, x]) => [k, valueToObject(x)])) };
}

function timestampParts(s: string): { seconds: number; nanos: number } {
  const ms = Date.parse(s);
  const frac = /\.(\d{1,9})/.exec(s);
  const nanos = frac ? Number(frac[1]!.padEnd(9, '0')) : 0;
  return { seconds: Math.floor(ms / 1000), nanos };
}

function wellKnownToObject(protos: EnvoyProtos, type: protobuf.Type, json: Json): unknown {
  const short = type.name;
  if (WRAPPERS.has(short)) return { value: json };
  switch (short) {
    case 'Duration': {
      const d = typeof json === 'string' ? parseDurationString(json) : undefined;
      return d ? { seconds: d[0], nanos: d[1] } : json;
    }
    case 'Timestamp':
      return typeof json === 'string' ? timestampParts(json) : json;
    case 'Struct':
      return isObject(json) ? structToObject(json as JsonObject) : json;
    case 'Value':
      return valueToObject(json);
    case 'ListValue':
      return Array.isArray(json) ? { values: json.map(valueToObject) } : json;
    case 'FieldMask':
      return typeof json === 'string'
        ? {
            paths:
              json === ''
                ? []
                : json.split(',').map((p) => p.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)),
          }
        : json;
    case 'Empty':
      return {};
    case 'Any':
      return isObject(json) ? anyToObject(protos, json as JsonObject) : json;
    default:
      return NOT_WKT;
  }
}

function anyToObject(protos: EnvoyProtos, json: JsonObject): EncodedAny {
  const typeUrl = json['@type'];
  if (typeof typeUrl !== 'string') throw new Error("Any without '@type'");
  const inner = protos.lookupTypeUrl(typeUrl);
  if (!inner) throw new Error(`unknown @type '${typeUrl}'`);
  ensureResolved(protos, inner);
  const { '@type': _t, ...rest } = json;
  // A well-known type inside an Any carries its JSON form in "value".
  const body =
    inner.fullName.startsWith('.google.protobuf.') && inner.name !== 'Any' && 'value' in rest
      ? (rest.value as Json)
      : rest;
  return { type_url: typeUrl, value: encodeMessage(protos, inner, body) };
}

function encodeMessage(protos: EnvoyProtos, type: protobuf.Type, json: Json): Uint8Array {
  const obj = jsonToMessageObject(protos, type, json) as Record<string, unknown>;
  return type.encode(type.fromObject(obj)).finish();
}

/**
 * Validates proto3 JSON as message `typeName` (Herald's strict walker: unknown
 * fields, types, validate.rules) and encodes it. Throws ConfigErrors, each
 * naming the field.
 */
export function encodeJson(typeName: string, json: unknown, protos = envoyProtos()): Uint8Array {
  const type = lookupResolved(protos, typeName);
  const { value, errors } = walkMessage(protos, typeName, json, { checkRequired: true });
  if (errors.length || !value) throw new ConfigErrors(errors);
  return encodeMessage(protos, type, value);
}

/**
 * Encodes a resource given as proto3 JSON (with or without `@type`) as an Any
 * of `typeUrl`.
 */
export function encodeResource(typeUrl: string, json: unknown, protos = envoyProtos()): EncodedResource {
  const info = typeInfo(typeUrl);
  if (!info) throw new Error(`unsupported xDS resource type ${typeUrl}`);
  if (!isObject(json)) throw new Error(`a ${info.short} resource must be an object`);
  let body: Record<string, unknown> = json;
  if ('@type' in json) {
    const { '@type': t, ...rest } = json;
    if (t !== typeUrl) throw new Error(`resource @type '${String(t)}' is not ${typeUrl}`);
    body = rest;
  }
  const bytes = encodeJson(typeNameOfUrl(typeUrl), body, protos);
  const name = body[info.nameField];
  if (typeof name !== 'string' || name === '')
    throw new Error(`a ${info.short} resource needs a non-empty '${info.nameField}'`);
  return { name, any: { type_url: typeUrl, value: bytes }, version: bytesVersion(bytes) };
}

// ---------------------------------------------------------------------------
// protobuf -> JSON

function int64ToJson(v: unknown): Json {
  if (typeof v === 'number') return v;
  const s = String(v); // Long and string both print their decimal value
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : s;
}

function scalarToJson(kind: string, v: unknown): Json {
  switch (kind) {
    case 'bytes':
      return Buffer.from(v as Uint8Array).toString('base64');
    case 'int64':
    case 'uint64':
    case 'sint64':
    case 'fixed64':
    case 'sfixed64':
      return int64ToJson(v);
    case 'double':
    case 'float': {
      const n = v as number;
      if (Number.isNaN(n)) return 'NaN';
      if (n === Number.POSITIVE_INFINITY) return 'Infinity';
      if (n === Number.NEGATIVE_INFINITY) return '-Infinity';
      return n;
    }
    default:
      return v as Json;
  }
}

function valueMessageToJson(v: Record<string, unknown>): Json {
  // Decoded messages keep defaults on the prototype: only own properties are set.
  const pick = (snake: string, camel: string) =>
    Object.hasOwn(v, camel) ? v[camel] : Object.hasOwn(v, snake) ? v[snake] : undefined;
  const struct = pick('struct_value', 'structValue');
  if (struct != null) return structMessageToJson(struct as Record<string, unknown>);
  const list = pick('list_value', 'listValue');
  if (list != null)
    return (((list as Record<string, unknown>).values as Record<string, unknown>[]) ?? []).map(
      valueMessageToJson,
    );
  const str = pick('string_value', 'stringValue');
  if (str != null) return str as string;
  const num = pick('number_value', 'numberValue');
  if (num != null) return scalarToJson('double', num);
  const bool = pick('bool_value', 'boolValue');
  if (bool != null) return bool as boolean;
  return null;
}

function structMessageToJson(v: Record<string, unknown>): JsonObject {
  const fields = (v.fields ?? {}) as Record<string, Record<string, unknown>>;
  return Object.fromEntries(Object.entries(fields).map(([k, x]) => [k, valueMessageToJson(x)]));
}

/** Converts a decoded protobufjs message to canonical proto3 JSON. */
export function messageToJson(protos: EnvoyProtos, type: protobuf.Type, msg: Record<string, unknown>): Json {
  const name = type.fullName.slice(1);
  if (name.startsWith('google.protobuf.')) {
    const short = type.name;
    if (WRAPPERS.has(short)) return scalarToJson(type.fields.value!.type, msg.value ?? defaultOf(type));
    switch (short) {
      case 'Duration':
        return formatDuration(Number(int64ToJson(msg.seconds ?? 0)), Number(msg.nanos ?? 0));
      case 'Timestamp': {
        const seconds = Number(int64ToJson(msg.seconds ?? 0));
        const nanos = Number(msg.nanos ?? 0);
        const iso = new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, '');
        const frac = nanos ? `.${String(nanos).padStart(9, '0').replace(/0+$/, '')}` : '';
        return `${iso}${frac}Z`;
      }
      case 'Struct':
        return structMessageToJson(msg);
      case 'Value':
        return valueMessageToJson(msg);
      case 'ListValue':
        return ((msg.values as Record<string, unknown>[]) ?? []).map(valueMessageToJson);
      case 'FieldMask':
        return ((msg.paths as string[]) ?? [])
          .map((p) => p.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase()))
          .join(',');
      case 'Empty':
        return {};
      case 'Any':
        return anyToJson(protos, msg as unknown as EncodedAny);
    }
  }
  const out: JsonObject = {};
  for (const field of type.fieldsArray) {
    if (!Object.hasOwn(msg, field.name)) continue;
    const v = msg[field.name];
    if (v === undefined || v === null) continue;
    protos.resolveField(field);
    const rt = field.resolvedType;
    const one = (x: unknown): Json => {
      if (rt instanceof protobuf.Type) return messageToJson(protos, rt, x as Record<string, unknown>);
      if (rt instanceof protobuf.Enum) return rt.valuesById[x as number] ?? (x as number);
      return scalarToJson(field.type, x);
    };
    if (field.map) {
      const entries = Object.entries(v as Record<string, unknown>);
      if (entries.length) out[field.name] = Object.fromEntries(entries.map(([k, x]) => [k, one(x)]));
    } else if (field.repeated) {
      const arr = v as unknown[];
      if (arr.length) out[field.name] = arr.map(one);
    } else {
      out[field.name] = one(v);
    }
  }
  return out;
}

function defaultOf(type: protobuf.Type): unknown {
  const kind = type.fields.value!.type;
  if (kind === 'string') return '';
  if (kind === 'bool') return false;
  if (kind === 'bytes') return new Uint8Array();
  return 0;
}

/** Decodes an Any to proto3 JSON with `@type` (or `{@type, value}` for a well-known type). */
export function anyToJson(protos: EnvoyProtos, any: EncodedAny): JsonObject {
  const typeUrl = any.type_url;
  const type = protos.lookupTypeUrl(typeUrl);
  if (!type) throw new Error(`unknown @type '${typeUrl}'`);
  ensureResolved(protos, type);
  const msg = type.decode(any.value ?? new Uint8Array()) as unknown as Record<string, unknown>;
  const json = messageToJson(protos, type, msg);
  if (type.fullName.startsWith('.google.protobuf.') && type.name !== 'Any')
    return { '@type': typeUrl, value: json };
  return { '@type': `${TYPE_URL_PREFIX}${type.fullName.slice(1)}`, ...(json as JsonObject) };
}

/** Decodes bytes of message `typeName` to canonical proto3 JSON (no `@type`). */
export function decodeJson(typeName: string, bytes: Uint8Array, protos = envoyProtos()): JsonObject {
  const type = lookupResolved(protos, typeName);
  return messageToJson(protos, type, type.decode(bytes) as unknown as Record<string, unknown>) as JsonObject;
}

/**
 * Decodes a received resource. Throws (with a message fit for a NACK's
 * error_detail) when the Any is not of `expectedTypeUrl` or does not decode.
 */
export function decodeResource(
  expectedTypeUrl: string,
  any: EncodedAny,
  protos = envoyProtos(),
): DecodedResource {
  const info = typeInfo(expectedTypeUrl);
  if (any.type_url !== expectedTypeUrl)
    throw new Error(`resource of type '${any.type_url}' in a response for '${expectedTypeUrl}'`);
  const value = any.value ?? new Uint8Array();
  let json: JsonObject;
  try {
    json = anyToJson(protos, { type_url: any.type_url, value });
  } catch (e) {
    throw new Error(`cannot decode ${typeNameOfUrl(expectedTypeUrl)}: ${(e as Error).message}`);
  }
  const name = json[info?.nameField ?? 'name'];
  if (typeof name !== 'string' || name === '')
    throw new Error(`${typeNameOfUrl(expectedTypeUrl)} without a name`);
  return { name, json, version: bytesVersion(value) };
}
