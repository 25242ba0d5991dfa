// Admin output written in pieces. A /config_dump of 100k endpoints is over
// 100 MB of JSON: built as one string it blocked the event loop (and so every
// proxied request) for seconds and held the whole text in memory. Here the
// output is produced by a generator, ~64 KB at a time, and written with
// backpressure, the event loop turning between pieces.
//
// jsonChunks() writes exactly what JSON.stringify(value, null, 2) writes. Small
// subtrees (most of them: one endpoint, one stat) still go through
// JSON.stringify, re-indented; only large ones are walked here. Two kinds of
// node are understood besides plain JSON:
//  - LazyList: an array whose items are made while writing (one host at a time);
//  - Typed: a proto message whose sensitive fields are redacted while writing,
//    as redactSensitive() does, without a redacted copy of the whole config.
import type http from 'node:http';
import type protobuf from 'protobufjs';
import type { EnvoyProtos } from '../config/envoy-protos.js';
import { type Json, redactAll, redactSensitive } from '../config/proto-json.js';

/** An array whose items are produced while it is written. */
export class LazyList {
  constructor(readonly items: () => Iterable<Out>) {}
}

/** A message of `type`, written with its sensitive fields redacted. */
export class Typed {
  constructor(
    readonly protos: EnvoyProtos,
    readonly type: protobuf.Type,
    readonly value: Json,
  ) {}
}

/** What jsonChunks() writes: JSON, with LazyList and Typed anywhere inside. */
export type Out = Json | undefined | LazyList | Typed | Out[] | { [k: string]: Out };

/** The size of a piece handed to the socket. */
export const CHUNK_BYTES = 64 * 1024;
/** Subtrees whose output is estimated under this many bytes go to JSON.stringify whole. */
export const SMALL_BYTES = 16 * 1024;

interface Sink {
  s: string;
  /** Yield once `s` is this long. */
  readonly size: number;
  /** Subtrees estimated under this many bytes go to JSON.stringify whole. */
  readonly small: number;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Estimated output bytes left of `budget` after `v`, or -1 if over it or `v` holds a lazy node. */
function fits(v: unknown, budget: number): number {
  if (typeof v === 'string') return budget - v.length - 8;
  if (v === null || typeof v !== 'object') return budget - 8;
  if (v instanceof LazyList || v instanceof Typed) return -1;
  let left = budget - 8;
  if (Array.isArray(v)) {
    for (const x of v) {
      left = fits(x, left);
      if (left < 0) return -1;
    }
  } else {
    for (const k in v) {
      left = fits((v as Record<string, unknown>)[k], left - k.length - 8);
      if (left < 0) return -1;
    }
  }
  return left;
}

/** JSON.stringify(v, null, 2) for a value written at indentation `pad`. */
function whole(v: unknown, pad: string): string | undefined {
  const s = JSON.stringify(v, null, 2) as string | undefined;
  return s === undefined || pad === '' || !s.includes('\n') ? s : s.replaceAll('\n', `\n${pad}`);
}

function isSkipped(v: unknown): boolean {
  return v === undefined || typeof v === 'function' || typeof v === 'symbol';
}

function withToJson(v: unknown, key: string): unknown {
  return v !== null && typeof v === 'object' && typeof (v as { toJSON?: unknown }).toJSON === 'function'
    ? (v as { toJSON(k: string): unknown }).toJSON(key)
    : v;
}

/**
 * Writes `v` (known not to be skipped) at indentation `pad` into the sink, yielding each
 * time the sink holds a piece's worth.
 */
function* write(v: unknown, pad: string, out: Sink): Generator<void, void, undefined> {
  if (v instanceof Typed) {
    yield* writeTyped(v.protos, v.type, v.value, pad, out);
    return;
  }
  if (v instanceof LazyList) {
    yield* writeItems(v.items(), pad, out);
    return;
  }
  if (v === null || typeof v !== 'object' || fits(v, out.small) >= 0) {
    out.s += whole(v, pad) ?? 'null';
  } else if (Array.isArray(v)) {
    yield* writeItems(v, pad, out);
  } else {
    yield* writeEntries(Object.entries(v), pad, out);
  }
  if (out.s.length >= out.size) yield;
}

function* writeItems(items: Iterable<unknown>, pad: string, out: Sink): Generator<void, void, undefined> {
  const inner = `${pad}  `;
  let first = true;
  out.s += '[';
  let i = 0;
  for (const raw of items) {
    const x = withToJson(raw, String(i++));
    out.s += first ? `\n${inner}` : `,\n${inner}`;
    first = false;
    if (isSkipped(x)) out.s += 'null';
    else yield* write(x, inner, out);
  }
  out.s += first ? ']' : `\n${pad}]`;
}

function* writeEntries(
  entries: Iterable<[string, unknown]>,
  pad: string,
  out: Sink,
  typed?: (key: string, v: unknown) => Generator<void, void, undefined> | undefined,
): Generator<void, void, undefined> {
  const inner = `${pad}  `;
  let first = true;
  out.s += '{';
  for (const [k, raw] of entries) {
    const x = withToJson(raw, k);
    if (isSkipped(x)) continue;
    out.s += `${first ? '\n' : ',\n'}${inner}${JSON.stringify(k)}: `;
    first = false;
    const t = typed?.(k, x);
    if (t) yield* t;
    else yield* write(x, inner, out);
  }
  out.s += first ? '}' : `\n${pad}}`;
}

function* typedItems(protos: EnvoyProtos, type: protobuf.Type, list: Json[]): Generator<Typed> {
  for (const x of list) yield new Typed(protos, type, x);
}

/** A message as redactSensitive() would return it, written without copying a large one. */
function* writeTyped(
  protos: EnvoyProtos,
  type: protobuf.Type,
  value: unknown,
  pad: string,
  out: Sink,
): Generator<void, void, undefined> {
  if (!isObject(value) || fits(value, out.small) >= 0) {
    yield* write(redactSensitive(protos, type, value as Json), pad, out);
    return;
  }
  const name = type.fullName.slice(1);
  if (name === 'google.protobuf.Any') {
    const url = value['@type'];
    const inner = typeof url === 'string' ? protos.lookupTypeUrl(url) : undefined;
    yield* inner ? writeTyped(protos, inner, value, pad, out) : write(value, pad, out);
    return;
  }
  if (name.startsWith('google.protobuf.')) {
    yield* write(value, pad, out);
    return;
  }
  const inner = `${pad}  `;
  yield* writeEntries(Object.entries(value), pad, out, (k, v) => {
    const field = type.fields[k];
    if (!field) return undefined;
    if ((field.options as Record<string, unknown> | undefined)?.['(udpa.annotations.sensitive)'] === true)
      return write(redactAll(v as Json), inner, out);
    protos.resolveField(field);
    const rt = field.resolvedType;
    if (!rt || !('fields' in rt)) return undefined;
    const t = rt as protobuf.Type;
    if (field.map && isObject(v))
      return writeEntries(Object.entries(v), inner, out, (_mk, mv) =>
        writeTyped(protos, t, mv, `${inner}  `, out),
      );
    if (Array.isArray(v)) return writeItems(typedItems(protos, t, v as Json[]), inner, out);
    return writeTyped(protos, t, v, inner, out);
  });
  if (out.s.length >= out.size) yield;
}

/**
 * JSON.stringify(value, null, 2) in pieces of about `size` bytes (the last one shorter).
 * `small` is there for tests (0: every object and array walked here).
 */
export function* jsonChunks(
  value: Out,
  { size = CHUNK_BYTES, small = SMALL_BYTES }: { size?: number; small?: number } = {},
): Generator<string, void, undefined> {
  const out: Sink = { s: '', size, small };
  const v = withToJson(value, '');
  if (isSkipped(v)) return;
  for (const _ of write(v, '', out)) {
    const s = out.s;
    out.s = '';
    yield s;
  }
  if (out.s) yield out.s;
}

/** Pieces (lines, say) joined into chunks of about `size` bytes. */
export function* joinChunks(
  pieces: Iterable<string>,
  size = CHUNK_BYTES,
): Generator<string, void, undefined> {
  let s = '';
  for (const p of pieces) {
    s += p;
    if (s.length >= size) {
      yield s;
      s = '';
    }
  }
  if (s) yield s;
}

/** Resolves once `res` can take more ('drain'), or is closed. */
function drained(res: http.ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Writes the chunks to `res` and ends it: one chunk per turn of the event loop, and when
 * the socket is full, none until it drains too. Stops if the client goes away. A failure
 * after the headers were sent destroys the response (the client sees it cut short).
 */
export async function writeChunks(res: http.ServerResponse, chunks: Iterable<string>): Promise<void> {
  const it = chunks[Symbol.iterator]();
  try {
    for (;;) {
      if (res.destroyed) {
        it.return?.();
        return;
      }
      const r = it.next();
      if (r.done) break;
      if (!res.write(r.value)) await drained(res);
      // Also after a drain: it can come from a write that completed at once (process.nextTick),
      // without the event loop having turned.
      await turn();
    }
  } catch (e) {
    res.destroy(e as Error);
    throw e;
  }
  res.end();
}
