// xxHash64, the hash Envoy uses for hash policies, ring hash and Maglev, from
// the xxhash-wasm package. Its WebAssembly module is compiled once, before a
// config that hashes is applied (initHashing), so hashing on the data path is
// synchronous; most configs never hash, and never load the package.
type Hasher = Awaited<ReturnType<typeof import('xxhash-wasm').default>>;
let hasher: Hasher | undefined;

export async function initHashing(): Promise<void> {
  if (hasher) return;
  const { default: xxhash } = await import('xxhash-wasm');
  hasher ??= await xxhash();
}

export function hashingReady(): boolean {
  return hasher !== undefined;
}

/** xxHash64 of a string's UTF-8 bytes, as an unsigned 64-bit bigint. */
export function xxHash64(s: string, seed = 0n): bigint {
  if (!hasher) throw new Error('initHashing() was not awaited');
  return hasher.h64Raw(Buffer.from(s, 'utf8'), seed);
}
