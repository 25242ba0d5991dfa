// Proto MergeFrom over canonical JSON, as Envoy applies --config-yaml over
// the -c file: scalars are replaced, messages merged field by field,
// repeated fields appended, map entries replaced, and setting one member of
// a oneof clears the others.
import type protobuf from 'protobufjs';
import type { EnvoyProtos } from './envoy-protos.js';
import type { Json, JsonObject } from './proto-json.js';

function isObject(v: Json | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function mergeMessage(
  protos: EnvoyProtos,
  type: protobuf.Type,
  base: JsonObject,
  overlay: JsonObject,
): JsonObject {
  const out: JsonObject = { ...base };
  for (const [key, value] of Object.entries(overlay)) {
    const field = type.fields[key];
    if (!field) {
      out[key] = value; // '@type' and the like
      continue;
    }
    if (field.partOf) for (const other of field.partOf.oneof) if (other !== key) delete out[other];
    const prev = out[key];
    if (field.repeated && Array.isArray(prev) && Array.isArray(value)) {
      out[key] = [...prev, ...value];
      continue;
    }
    if (field.map && isObject(prev) && isObject(value)) {
      out[key] = { ...prev, ...value };
      continue;
    }
    protos.resolveField(field);
    const rt = field.resolvedType;
    if (rt && 'fields' in rt && isObject(prev) && isObject(value)) {
      const t = rt as protobuf.Type;
      const name = t.fullName.slice(1);
      if (name === 'google.protobuf.Any') {
        const sameType = prev['@type'] === value['@type'];
        const inner = typeof value['@type'] === 'string' ? protos.lookupTypeUrl(value['@type']) : undefined;
        out[key] = sameType && inner ? mergeMessage(protos, inner, prev, value) : value;
      } else if (name === 'google.protobuf.Struct') {
        out[key] = { ...prev, ...value };
      } else if (name.startsWith('google.protobuf.')) {
        out[key] = value;
      } else {
        out[key] = mergeMessage(protos, t, prev, value);
      }
      continue;
    }
    out[key] = value;
  }
  return out;
}
