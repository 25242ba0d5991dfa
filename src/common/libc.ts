// The few libc calls Node does not offer (a listening socket that
// nothing polls, shared memory), through koffi. The library is loaded once;
// each caller declares the functions it needs.
import { createRequire } from 'node:module';

type Koffi = typeof import('koffi');

let loaded: { koffi: Koffi; lib: ReturnType<Koffi['load']> } | undefined;

/** koffi and libc.so.6 (Linux); throws where they cannot be loaded. */
export function libc(): { koffi: Koffi; lib: ReturnType<Koffi['load']> } {
  if (!loaded) {
    const require = createRequire(import.meta.url);
    const koffi = require('koffi') as Koffi;
    loaded = { koffi, lib: koffi.load('libc.so.6') };
  }
  return loaded;
}
