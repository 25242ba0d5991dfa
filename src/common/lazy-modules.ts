// Node modules that only some configs need, loaded on first use: each costs
// a few MB of memory, and a plaintext HTTP/1 proxy needs none of them.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export function http2Module(): typeof import('node:http2') {
  return require('node:http2');
}

export function tlsModule(): typeof import('node:tls') {
  return require('node:tls');
}

export function httpModule(): typeof import('node:http') {
  return require('node:http');
}

export function cryptoModule(): typeof import('node:crypto') {
  return require('node:crypto');
}

/** Only for memory figures when process.memoryUsage() fails (EMFILE): importing it costs ~1 MB. */
export function v8Module(): typeof import('node:v8') {
  return require('node:v8');
}
