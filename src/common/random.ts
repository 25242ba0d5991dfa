// Random request ids and cookie values from the kernel's CSPRNG
// (/dev/urandom), read in blocks. node:crypto gives the same, but loading it
// costs ~1.5 MB per process, which a proxy without TLS has no other use for.
// Where /dev/urandom cannot be read, node:crypto is used.
import fs from 'node:fs';
import { cryptoModule } from './lazy-modules.js';

const POOL_SIZE = 4096;
const pool = new Uint8Array(POOL_SIZE);
let offset = POOL_SIZE;
let fd: number | undefined;
let useCrypto = false;

// Hex digits per byte value, as character codes; ids are formatted into one scratch buffer and
// decoded once (a chain of string concatenations allocated ~600 bytes per id).
const HEX_CODES = new Uint8Array(512);
for (let i = 0; i < 256; i++) {
  const s = i.toString(16).padStart(2, '0');
  HEX_CODES[2 * i] = s.charCodeAt(0);
  HEX_CODES[2 * i + 1] = s.charCodeAt(1);
}
const UUID_OUT = Buffer.alloc(36, 45 /* '-' */);

function refill(): boolean {
  try {
    fd ??= fs.openSync('/dev/urandom', 'r');
    let n = 0;
    while (n < POOL_SIZE) n += fs.readSync(fd, pool, n, POOL_SIZE - n, null);
    offset = 0;
    return true;
  } catch {
    useCrypto = true;
    return false;
  }
}

/** A random (version 4) UUID, as crypto.randomUUID(). */
export function randomUUID(): string {
  if (useCrypto || (offset + 16 > POOL_SIZE && !refill())) return cryptoModule().randomUUID();
  const b = pool;
  const o = offset;
  offset += 16;
  const out = UUID_OUT;
  let p = 0;
  for (let i = 0; i < 16; i++) {
    let v = b[o + i]!;
    if (i === 6)
      v = (v & 0x0f) | 0x40; // version 4
    else if (i === 8) v = (v & 0x3f) | 0x80; // RFC 4122 variant
    if (p === 8 || p === 13 || p === 18 || p === 23) p++; // the dashes stay in place
    out[p++] = HEX_CODES[2 * v]!;
    out[p++] = HEX_CODES[2 * v + 1]!;
  }
  return out.toString('latin1', 0, 36);
}

/** `n` random bytes (n <= 4096), as crypto.randomBytes(n). */
export function randomBytes(n: number): Buffer {
  if (useCrypto || n > POOL_SIZE || (offset + n > POOL_SIZE && !refill()))
    return cryptoModule().randomBytes(n);
  const out = Buffer.from(pool.subarray(offset, offset + n));
  offset += n;
  return out;
}
