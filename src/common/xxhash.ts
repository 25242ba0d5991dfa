// xxHash64, the hash Envoy uses for hash policies, ring hash and Maglev, from
// the xxhash-wasm package. Its WebAssembly module is compiled once at start-up
// (initHashing) so hashing on the data path is synchronous.
import xxhash from 'xxhash-wasm';

type Hasher = Awaited<ReturnType<typeof xxhash>>;
let hasher: Hasher | undefined;

export async function initHashing(): Promise<void> {
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
