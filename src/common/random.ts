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

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

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
  return (
    HEX[b[o]!]! +
    HEX[b[o + 1]!]! +
    HEX[b[o + 2]!]! +
    HEX[b[o + 3]!]! +
    '-' +
    HEX[b[o + 4]!]! +
    HEX[b[o + 5]!]! +
    '-' +
    HEX[(b[o + 6]! & 0x0f) | 0x40]! +
    HEX[b[o + 7]!]! +
    '-' +
    HEX[(b[o + 8]! & 0x3f) | 0x80]! +
    HEX[b[o + 9]!]! +
    '-' +
    HEX[b[o + 10]!]! +
    HEX[b[o + 11]!]! +
    HEX[b[o + 12]!]! +
    HEX[b[o + 13]!]! +
    HEX[b[o + 14]!]! +
    HEX[b[o + 15]!]!
  );
}

/** `n` random bytes (n <= 4096), as crypto.randomBytes(n). */
export function randomBytes(n: number): Buffer {
  if (useCrypto || n > POOL_SIZE || (offset + n > POOL_SIZE && !refill()))
    return cryptoModule().randomBytes(n);
  const out = Buffer.from(pool.subarray(offset, offset + n));
  offset += n;
  return out;
}
