// Integer counters every Herald process can update atomically: the circuit
// breakers' resource counts are per cluster for the whole proxy, as in Envoy,
// though each worker is its own process. With workers the counters live in a
// shared memory file (/dev/shm, mapped through libc with koffi) and are
// changed with Atomics; a single process uses ordinary memory.
import { libc as loadLibc } from './libc.js';

const SLOTS = 65536;

let array = new Int32Array(SLOTS);
let next = 0;

/** A slot for one counter; processes that build the same config in the same order get the same slots. */
export function allocateSlot(): { array: Int32Array; index: number } {
  if (next >= array.length) {
    // Out of slots: carry on with private memory (only possible after very many rebuilds).
    array = new Int32Array(SLOTS);
    next = 0;
  }
  return { array, index: next++ };
}

interface Libc {
  open(path: string, flags: number, mode: number): number;
  ftruncate(fd: number, len: number): number;
  mmap(addr: null, len: number, prot: number, flags: number, fd: number, off: number): unknown;
  close(fd: number): number;
  unlink(path: string): number;
}

let libc: Libc | undefined;
function load(): { libc: Libc; view: (p: unknown, len: number) => ArrayBuffer } {
  const { koffi, lib } = loadLibc();
  if (!libc) {
    libc = {
      open: lib.func('int open(const char *, int, int)') as Libc['open'],
      ftruncate: lib.func('int ftruncate(int, long)') as Libc['ftruncate'],
      mmap: lib.func('void *mmap(void *, size_t, int, int, int, long)') as Libc['mmap'],
      close: lib.func('int close(int)') as Libc['close'],
      unlink: lib.func('int unlink(const char *)') as Libc['unlink'],
    };
  }
  return { libc, view: (p, len) => koffi.view(p as never, len) as ArrayBuffer };
}

const O_RDWR = 0o2;
const O_CREAT = 0o100;
const PROT_RW = 3;
const MAP_SHARED = 1;

/**
 * Main process: creates the shared counters (zeroed) and returns the fd that workers map. The
 * file is unlinked at once, so nothing is left behind in /dev/shm whatever way the process ends;
 * the fd (kept open for workers started later) and the mappings keep the memory alive.
 * Must run before any cluster is built.
 */
export function createSharedCounters(): number {
  const { libc: c } = load();
  const path = `/dev/shm/herald-${process.pid}-${Date.now()}`;
  const fd = c.open(path, O_RDWR | O_CREAT, 0o600);
  if (fd < 0) throw new Error(`cannot create shared counters ${path}`);
  c.unlink(path);
  if (c.ftruncate(fd, SLOTS * 4) !== 0) throw new Error('cannot size the shared counters');
  mapShared(fd);
  return fd;
}

/** Worker process: maps the shared counters from the fd the main process passed down. */
export function useSharedCounters(fd: number): void {
  mapShared(fd);
}

function mapShared(fd: number): void {
  const { libc: c, view } = load();
  const bytes = SLOTS * 4;
  const p = c.mmap(null, bytes, PROT_RW, MAP_SHARED, fd, 0);
  array = new Int32Array(view(p, bytes));
  next = 0;
}
