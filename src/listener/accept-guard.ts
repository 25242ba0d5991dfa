// Accepting connections at the file-descriptor limit without dying and
// without starving the rest of the proxy.
//
// Each accepted connection costs a file descriptor, and so does everything else
// Herald does with it (the upstream connection, an access-log file, a health
// check, the admin server). libuv sheds load at the hard limit itself (it
// closes a spare fd, accepts and closes what is waiting, then reopens the
// spare) and tells Node nothing; should that spare be gone (a thread took the
// fd before libuv could reopen it), it reports EMFILE as an 'error' on the
// net.Server (fatal with no listener) and calls accept again at once, in a
// loop that spins for as long as no fd is freed.
//
// So a listener closes a connection it accepted when fewer than a small
// reserve of fds would be left (Linux hands out the lowest free fd, so an fd
// numbered near the limit means the ones below are all taken), counts it in
// `listener.<address>.downstream_cx_accept_error` and logs at most once a
// second. On an accept error it counts, frees a spare fd of its own so libuv's
// next accept succeeds, and closes what is accepted until the backlog is empty.
// Accepting goes on as usual once connections close.
import fs from 'node:fs';
import type net from 'node:net';
import { logger } from '../common/logger.js';
import type { Counter } from '../stats/store.js';

const log = logger('conn_handler');

/** The soft RLIMIT_NOFILE, read once (at the first listener, while fds are plenty). */
let limit: number | undefined | null = null;
export function fdLimit(): number | undefined {
  if (limit === null) {
    limit = undefined;
    try {
      const m = /^Max open files\s+(\d+)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
      if (m) limit = Number(m[1]);
    } catch {
      // Not Linux, or no /proc: no reserve, libuv's shedding alone.
    }
  }
  return limit;
}

/** Fds kept free of downstream connections: 1/64 of the limit, between 8 and 256. */
export function fdReserve(max: number): number {
  return Math.min(256, Math.max(8, Math.floor(max / 64)));
}

/** A descriptor held only to be closed when an accept fails for want of one. */
let spare = -1;
let retaking = false;
function holdSpare(): void {
  if (spare >= 0) return;
  try {
    spare = fs.openSync('/dev/null', 'r');
  } catch {
    retakeSoon();
  }
}
/** Later, not now: the fd just freed is for the accept that follows. */
function retakeSoon(): void {
  if (retaking) return;
  retaking = true;
  setTimeout(() => {
    retaking = false;
    holdSpare();
  }, 250).unref();
}
function releaseSpare(): void {
  if (spare < 0) return;
  try {
    fs.closeSync(spare);
  } catch {
    // Already gone.
  }
  spare = -1;
  retakeSoon();
}

export class AcceptGuard {
  /** The accept error (EMFILE, ENFILE) whose loop turn is closing whatever gets accepted. */
  private shedding: string | undefined;
  private unlogged = 0;
  private reason = '';
  private lastLog = 0;
  private logTimer: NodeJS.Timeout | undefined;

  constructor(
    /** The listener's name, for the log. */
    private readonly name: string,
    private readonly counter: () => Counter,
  ) {
    fdLimit();
    holdSpare();
  }

  /** Counts and survives accept errors on a listening server (call once it is listening). */
  watch(server: net.Server): void {
    server.on('error', (e: NodeJS.ErrnoException) => {
      this.failed(`accept failed: ${e.code ?? e.message}`);
      if (e.code === 'EMFILE' || e.code === 'ENFILE') {
        // libuv accepts again as soon as this returns: that accept gets the freed fd, and what
        // follows it is closed, until the backlog is empty and the loop ends.
        releaseSpare();
        this.shedding = e.code;
        setImmediate(() => {
          this.shedding = undefined;
        });
      }
    });
  }

  /** First thing for each accepted connection: false when it was closed for want of fds. */
  admit(socket: net.Socket): boolean {
    if (!this.shedding) {
      const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
      const max = fdLimit();
      if (fd === undefined || fd < 0 || max === undefined || fd < max - fdReserve(max)) return true;
    }
    socket.destroy();
    if (this.shedding) this.failed(`accept failed: ${this.shedding}`);
    else {
      const max = fdLimit()!;
      this.failed(`at the file descriptor limit (${max}, keeping ${fdReserve(max)} free)`);
    }
    return false;
  }

  /** A connection this listener could not take: counted, and logged at most once a second. */
  failed(reason: string): void {
    this.counter().inc();
    this.unlogged++;
    this.reason = reason;
    const now = Date.now();
    if (now - this.lastLog >= 1000) this.flushLog(now);
    else
      this.logTimer ??= setTimeout(
        () => {
          this.logTimer = undefined;
          this.flushLog(Date.now());
        },
        1000 - (now - this.lastLog),
      ).unref();
  }

  private flushLog(now: number): void {
    if (this.unlogged === 0) return;
    log.warn(`listener '${this.name}': ${this.unlogged} connection(s) not accepted: ${this.reason}`);
    this.unlogged = 0;
    this.lastLog = now;
  }
}
