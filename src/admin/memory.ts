// The process's memory figures, for /memory and the server.memory_* gauges, even when
// they cannot all be read. process.memoryUsage() (and process.memoryUsage.rss()) open
// /proc/self/stat for the resident set size, and throw EMFILE when the process is out
// of file descriptors: exactly when an operator asks the admin API what is going on.
// The heap figures come from V8 and need no file; the RSS is then the last one read.

import { v8Module } from '../common/lazy-modules.js';

export interface MemoryFigures {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
}

/** The last resident set size read (0 before the first). */
let lastRss = 0;

/**
 * process.memoryUsage(), or V8's heap figures and the last RSS read when it throws (the
 * last one read here, or else what `knownRss` gives: a figure read elsewhere).
 */
export function memoryUsage(knownRss?: () => number): MemoryFigures {
  try {
    const m = process.memoryUsage();
    lastRss = m.rss;
    return m;
  } catch {
    const h = v8Module().getHeapStatistics();
    return {
      rss: lastRss || (knownRss?.() ?? 0),
      heapTotal: h.total_heap_size,
      heapUsed: h.used_heap_size,
      external: h.external_memory,
    };
  }
}
