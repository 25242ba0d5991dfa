// Herald's main process with --concurrency N > 1: it binds the listeners,
// forks N worker processes that own connections end to end, hands them
// config and host health, merges their stats, watches their event loops and
// replaces a worker that dies or hangs.
//
// Connections reach workers in one of two ways (Envoy's choice per listener):
// every worker accepts on the shared listening socket and the kernel decides
// which wins ("kernel balance", the default), or the main process accepts and
// passes each connection to the worker with the fewest active connections
// (`connection_balance_config.exact_balance`).

import { type ChildProcess, fork } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { allLoggers, logger } from '../common/logger.js';
import { AcceptGuard } from '../listener/accept-guard.js';
import { type ListenSocket, makeListenSocket } from '../listener/listen-socket.js';
import { listenerStatName } from '../listener/listener.js';
import type { ListenerConfig } from '../listener/listener-config.js';
import type { Counter, Gauge, StatsStore } from '../stats/store.js';
import type { OutlierEvent } from '../upstream/cluster.js';
import type { WatchdogConfig } from './bootstrap-config.js';
import type { MainToWorker, StatsDelta, WorkerInit, WorkerToMain } from './worker-protocol.js';

const log = logger('main');
const WORKER_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'worker-main.js');
/** First inherited fd in a worker (0-2 stdio, 3 IPC): the shared counters, then listening sockets. */
const FIRST_LISTEN_FD = 4;

interface BoundListener {
  config: ListenerConfig;
  /** Bound after the workers started (LDS): not among their inherited fds. */
  dynamic?: boolean;
  socket: ListenSocket;
  /** Exact balance: the main process accepts here. */
  acceptor?: net.Server;
  guard?: AcceptGuard;
  /** Unbound by LDS: what it accepted goes to the listener of that name replacing it, or is closed. */
  closed?: boolean;
}

/** A connection the main process accepted (exact balance) and has not seen a worker take yet. */
interface Handoff {
  b: BoundListener;
  socket: net.Socket;
  /** The worker process it was sent to. */
  child?: ChildProcess;
  /** While queued here: the client gave up. */
  onClose?: () => void;
}

class Worker {
  child!: ChildProcess;
  ready = false;
  lastBeat = Date.now();
  missed = false;
  megamissed = false;
  killed = false;
  /** Active connections per listener, for exact balance: counted from the handoff on. */
  readonly active = new Map<string, number>();
  /** Listeners this worker has created (it can take their connections). */
  readonly listeners = new Set<string>();
  /**
   * Connections sent and not yet confirmed ('got'), by handoff id. The main process keeps its
   * copy of each until then: should the worker die first, the connection goes to another one.
   */
  readonly inflight = new Map<number, Handoff>();
  /** Last gauge values this worker reported. */
  readonly gauges = new Map<string, number>();
  constructor(readonly index: number) {}
}

export interface WorkerManagerOptions {
  concurrency: number;
  canonical: import('../config/proto-json.js').JsonObject;
  serviceCluster?: string | undefined;
  serviceNode?: string | undefined;
  watchdog: WatchdogConfig;
  /** The shared-counters fd (passed to each worker at fork). */
  sharedCounters: number;
  /** --drain-time-s, for graceful draining. */
  drainTimeMs: number;
  /** Admin /healthcheck/fail in force, for a new worker. */
  healthCheckFailed: () => boolean;
  /** The last DNS result of each DNS cluster, for a new worker. */
  resolvedHosts: () => WorkerInit['resolvedHosts'];
  /** Active health-check bits per cluster, for a new worker. */
  hostHealth: () => Record<string, Array<[string, number]>>;
  /** The xDS resources in force, for a worker that starts now. */
  dynamicState: () => WorkerInit['dynamic'];
  /** Outlier detection inputs from a worker, for the main process's detectors. */
  onOutlierEvents: (events: Array<[string, string, OutlierEvent]>) => void;
  /** A worker saw x-envoy-immediate-health-check-fail from a host. */
  onImmediateFail: (cluster: string, address: string) => void;
  stats: StatsStore;
}

export class WorkerManager {
  private readonly workers: Worker[] = [];
  private readonly bound: BoundListener[] = [];
  /** Accepted connections waiting for a worker that has their listener (start-up, replacement). */
  private queued: Handoff[] = [];
  private handoffSeq = 0;
  /** Static exact-balance listeners accept once every first worker is ready (see start). */
  private started = false;
  private watchdogTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  private flushSeq = 0;
  private readonly flushWaiters = new Map<number, { pending: Set<number>; done: () => void }>();
  /** Gauge name -> summed value over workers, kept in the main store. */
  private readonly gaugeCache = new Map<string, Gauge>();
  private readonly counterCache = new Map<string, Counter>();
  private readonly watchdogMiss: Counter;
  private readonly watchdogMegaMiss: Counter;
  private readonly workersMiss: Counter;
  private readonly workersMegaMiss: Counter;

  constructor(private readonly opts: WorkerManagerOptions) {
    const s = opts.stats;
    this.watchdogMiss = s.counter('server.watchdog_miss');
    this.watchdogMegaMiss = s.counter('server.watchdog_mega_miss');
    this.workersMiss = s.counter('workers.watchdog_miss');
    this.workersMegaMiss = s.counter('workers.watchdog_mega_miss');
  }

  /** Binds every listener (the workers accept on these sockets); returns the bound ports. */
  bind(listeners: readonly ListenerConfig[]): Map<string, number> {
    const ports = new Map<string, number>();
    for (const config of listeners) {
      const { host, port, ipv4Compat } = config.address;
      const socket = makeListenSocket(host, port, net.isIPv6(host) && !ipv4Compat);
      const b: BoundListener = { config, socket };
      // Not accepting yet: until the workers are ready, connections wait in the kernel's backlog.
      if (config.exactBalance) b.acceptor = this.acceptor(b);
      this.bound.push(b);
      ports.set(config.name, socket.port);
      log.info(
        `listener '${config.name}' bound to ${host}:${socket.port} (${config.exactBalance ? 'exact balance' : 'kernel balance'})`,
      );
    }
    return ports;
  }

  /**
   * An LDS listener (in the main process of several workers): bound here and served like exact
   * balance, since a socket cannot be added to a worker's inherited fds after it started.
   */
  bindDynamic(config: ListenerConfig): number {
    this.unbindDynamic(config.name);
    const { host, port, ipv4Compat } = config.address;
    const socket = makeListenSocket(host, port, net.isIPv6(host) && !ipv4Compat);
    const b: BoundListener = { config, socket, dynamic: true };
    b.acceptor = this.acceptor(b);
    // Taken by workers once they have applied the listener (until then, queued here).
    for (const w of this.workers) w.listeners.delete(config.name);
    b.acceptor.listen({ fd: socket.fd });
    this.bound.push(b);
    log.info(`listener '${config.name}' (LDS) bound to ${host}:${socket.port}`);
    return socket.port;
  }

  /** Exact balance: this process accepts on the listener's socket and hands connections over. */
  private acceptor(b: BoundListener): net.Server {
    const { config } = b;
    const prefix = config.statPrefix || listenerStatName(config.address.host, b.socket.port);
    const guard = new AcceptGuard(config.name, () =>
      this.opts.stats.counter(`listener.${prefix}.downstream_cx_accept_error`),
    );
    b.guard = guard;
    // Paused on accept: the worker's listener filters read the first bytes, not this process.
    const acceptor = net.createServer({ pauseOnConnect: true }, (socket) => {
      socket.on('error', () => {});
      if (guard.admit(socket)) this.dispatch({ b, socket });
    });
    guard.watch(acceptor);
    return acceptor;
  }

  /** The new config of a listener whose address did not change. */
  updateDynamic(config: ListenerConfig): void {
    const b = this.bound.find((x) => x.config.name === config.name);
    if (b) b.config = config;
  }

  unbindDynamic(name: string): void {
    const i = this.bound.findIndex((b) => b.config.name === name);
    if (i < 0) return;
    const [b] = this.bound.splice(i, 1);
    b!.closed = true;
    b!.acceptor?.close();
    b!.socket.close();
    // Connections it accepted that no worker has yet go to the listener of that name that
    // replaces it (LDS moved it), or are closed (LDS removed it): see dispatch.
    setImmediate(() => this.flushQueued());
  }

  async start(): Promise<void> {
    const ready: Promise<void>[] = [];
    for (let i = 0; i < this.opts.concurrency; i++) {
      const w = new Worker(i);
      this.workers.push(w);
      ready.push(this.spawn(w));
    }
    await Promise.all(ready);
    // Exact balance accepts from here: a burst that arrived during start-up waited in the backlog
    // and now spreads over every worker, instead of going to whichever was ready first.
    this.started = true;
    for (const b of this.bound)
      if (b.acceptor && !b.acceptor.listening) b.acceptor.listen({ fd: b.socket.fd });
    this.flushQueued();
    const wd = this.opts.watchdog;
    const every = Math.max(10, Math.min(wd.missMs, 100) / 2);
    this.watchdogTimer = setInterval(() => this.checkWatchdog(), every);
    this.watchdogTimer.unref();
  }

  private spawn(w: Worker): Promise<void> {
    const kernel = this.bound.filter((b) => !b.acceptor);
    const stdio: Array<'inherit' | 'ipc' | number> = ['inherit', 'inherit', 'inherit', 'ipc'];
    // fd 4: the shared counters; then the kernel-balanced listening sockets.
    stdio.push(this.opts.sharedCounters);
    for (const b of kernel) stdio.push(b.socket.fd);
    w.ready = false;
    w.killed = false;
    w.lastBeat = Date.now();
    w.missed = w.megamissed = false;
    w.active.clear();
    w.listeners.clear();
    let fdIndex = FIRST_LISTEN_FD + 1;
    const levels: Record<string, string> = {};
    for (const l of allLoggers()) levels[l.name] = String(l.level);
    const init: WorkerInit = {
      t: 'init',
      index: w.index,
      concurrency: this.opts.concurrency,
      canonical: this.opts.canonical,
      serviceCluster: this.opts.serviceCluster,
      serviceNode: this.opts.serviceNode,
      logLevels: levels,
      listeners: this.bound
        .filter((b) => !b.dynamic)
        .map((b) =>
          b.acceptor
            ? { name: b.config.name, port: b.socket.port }
            : { name: b.config.name, port: b.socket.port, fd: fdIndex++ },
        ),
      dynamic: this.opts.dynamicState(),
      hostHealth: this.opts.hostHealth(),
      resolvedHosts: this.opts.resolvedHosts(),
      sharedCounters: FIRST_LISTEN_FD,
      heartbeatMs: Math.max(5, Math.min(50, this.opts.watchdog.missMs / 4)),
      statsFlushMs: 1000,
      drainTimeMs: this.opts.drainTimeMs,
      healthCheckFailed: this.opts.healthCheckFailed(),
    };
    const child = fork(WORKER_SCRIPT, [], { stdio, serialization: 'advanced' });
    w.child = child;
    return new Promise((resolve, reject) => {
      child.on('message', (m: WorkerToMain) => {
        if (m.t === 'ready') {
          w.ready = true;
          resolve();
          this.flushQueued();
        } else this.onMessage(w, m);
      });
      // A handle the worker could not receive (no free fd there): Node answers NACK and drops it.
      child.on('internalMessage', (m: { cmd?: string }) => {
        if (m?.cmd === 'NODE_HANDLE_NACK') this.onHandoffRefused(w, child);
      });
      // Gone: the process exited and its channel was read to the end ('close'; 'message' events
      // of that last read are still queued, hence setImmediate). Not 'disconnect': Node holds it
      // back while a handle awaits its ACK, which a dead worker never sends.
      child.once('close', () => setImmediate(() => this.reclaim(w, child)));
      // Fork failed (EMFILE, EAGAIN): no 'exit' follows. Also IPC errors towards a dying worker.
      child.on('error', (e) => {
        if (child.pid !== undefined || this.stopping || w.child !== child) {
          log.debug(`worker ${w.index}: ${e.message}`);
          return;
        }
        log.error(`worker ${w.index} could not be started: ${e.message}; trying again in 1 s`);
        reject(e);
        this.respawnLater(w);
      });
      // Not started (its 'error' follows): there is no channel to send on.
      if (child.pid !== undefined) child.send(init);
      child.once('exit', (code, signal) => {
        w.ready = false;
        this.dropGauges(w);
        if (!w.child || w.child !== child) return;
        if (this.stopping) return;
        if (!w.killed && code !== 0)
          log.error(`worker ${w.index} exited (${signal ?? code}); starting a new one`);
        reject(new Error(`worker ${w.index} exited during start`));
        // Replaced, with the same listening sockets: the listeners never stop accepting.
        this.respawn(w);
      });
    });
  }

  private respawn(w: Worker): void {
    try {
      this.spawn(w).catch((e) => log.error(`worker ${w.index} could not be restarted: ${e.message}`));
    } catch (e) {
      log.error(`worker ${w.index} could not be restarted: ${(e as Error).message}`);
      this.respawnLater(w);
    }
  }

  /** Out of processes or file descriptors: try again in a second rather than give the slot up. */
  private respawnLater(w: Worker): void {
    setTimeout(() => {
      if (!this.stopping) this.respawn(w);
    }, 1000).unref();
  }

  private onMessage(w: Worker, m: WorkerToMain): void {
    switch (m.t) {
      case 'hb':
        w.lastBeat = Date.now();
        w.missed = w.megamissed = false;
        return;
      case 'cx': {
        const n = w.active.get(m.l) ?? 0;
        if (n > 0) w.active.set(m.l, n - 1);
        return;
      }
      case 'got': {
        // The worker has its own copy now: this one can go (closing it leaves the connection be).
        const h = w.inflight.get(m.id);
        w.inflight.delete(m.id);
        h?.socket.destroy();
        return;
      }
      case 'listener':
        w.listeners.add(m.l);
        this.flushQueued();
        return;
      case 'stats':
        this.mergeStats(w, m.d);
        if (m.id !== undefined) {
          const waiter = this.flushWaiters.get(m.id);
          waiter?.pending.delete(w.index);
          if (waiter && waiter.pending.size === 0) waiter.done();
        }
        return;
      case 'hcfail':
        this.opts.onImmediateFail(m.c, m.a);
        return;
      case 'od':
        this.opts.onOutlierEvents(m.e);
        return;
      case 'fatal':
        log.critical(`worker ${w.index}: ${m.msg}`);
        return;
    }
  }

  /**
   * Exact balance: the connection goes to the ready worker with the fewest on this listener,
   * counting connections still on their way to it. With none ready (start-up, every worker being
   * replaced) or none having the listener yet (LDS), it waits here: an accepted connection is
   * never dropped for want of a worker.
   */
  private dispatch(h: Handoff): void {
    if (h.b.closed) {
      const now = this.bound.find((x) => x.config.name === h.b.config.name);
      if (now) h.b = now;
    }
    const { b, socket } = h;
    if (b.closed || socket.destroyed) {
      socket.destroy();
      return;
    }
    const name = b.config.name;
    let best: Worker | undefined;
    let bestN = Number.POSITIVE_INFINITY;
    for (const w of this.workers) {
      // Not connected: dead, its exit not seen yet.
      if (!w.ready || !w.child.connected || !w.listeners.has(name)) continue;
      const n = w.active.get(name) ?? 0;
      if (n < bestN) {
        best = w;
        bestN = n;
      }
    }
    if (!best || this.stopping) {
      h.onClose = () => this.dropQueued(h);
      socket.once('close', h.onClose);
      this.queued.push(h);
      return;
    }
    const w = best;
    w.active.set(name, bestN + 1);
    const id = ++this.handoffSeq;
    h.child = w.child;
    w.inflight.set(id, h);
    const msg: MainToWorker = { t: 'conn', l: name, id };
    // Failed sends are retried on a later turn, so a worker dying under a burst costs no busy loop.
    const failed = () => setImmediate(() => this.redispatch(w, id));
    try {
      // keepOpen: this process closes its copy only once the worker says it has the connection.
      w.child.send(msg, socket, { keepOpen: true }, (err) => {
        if (err) failed();
      });
    } catch {
      failed();
    }
  }

  /** A handoff that did not reach `w`: it goes to another worker (or waits for one). */
  private redispatch(w: Worker, id: number): void {
    const h = w.inflight.get(id);
    if (!h) return;
    w.inflight.delete(id);
    this.uncount(w, h);
    this.dispatch(h);
  }

  /** A worker process is gone: the connections sent to it that it never took go to the others. */
  private reclaim(w: Worker, child: ChildProcess): void {
    for (const [id, h] of [...w.inflight]) if (h.child === child) this.redispatch(w, id);
  }

  /**
   * The worker could not receive a connection (Node's NACK: no free file descriptor there).
   * Handles reach a worker one at a time, so it is the oldest one not taken; it is offered again
   * shortly, to whichever worker then has the fewest.
   */
  private onHandoffRefused(w: Worker, child: ChildProcess): void {
    const first = [...w.inflight].find(([, h]) => h.child === child);
    if (!first) return;
    const [id, h] = first;
    h.b.guard?.failed(`worker ${w.index} had no free file descriptor to receive it (offered again)`);
    w.inflight.delete(id);
    this.uncount(w, h);
    setTimeout(() => this.dispatch(h), 100).unref();
  }

  /** A handoff that did not happen no longer counts for the worker (unless it was replaced). */
  private uncount(w: Worker, h: Handoff): void {
    if (h.child !== w.child) return;
    const n = w.active.get(h.b.config.name) ?? 0;
    if (n > 0) w.active.set(h.b.config.name, n - 1);
  }

  private dropQueued(h: Handoff): void {
    const i = this.queued.indexOf(h);
    if (i >= 0) this.queued.splice(i, 1);
  }

  /** Hands queued connections over to workers that can take them now. */
  private flushQueued(): void {
    if (this.queued.length === 0 || !this.started) return;
    const q = this.queued;
    this.queued = [];
    for (const h of q) {
      if (h.onClose) h.socket.off('close', h.onClose);
      h.onClose = undefined;
      this.dispatch(h);
    }
  }

  private mergeStats(w: Worker, d: StatsDelta): void {
    const store = this.opts.stats;
    for (const [name, inc] of d.c) {
      let c = this.counterCache.get(name);
      if (!c) this.counterCache.set(name, (c = store.counter(name)));
      c.inc(inc);
    }
    for (const [name, value] of d.g) {
      const before = w.gauges.get(name) ?? 0;
      w.gauges.set(name, value);
      let g = this.gaugeCache.get(name);
      if (!g) this.gaugeCache.set(name, (g = store.gauge(name)));
      g.inc(value - before);
    }
  }

  /** A worker that is gone takes its gauges with it (its counters stay counted). */
  private dropGauges(w: Worker): void {
    for (const [name, value] of w.gauges) this.gaugeCache.get(name)?.dec(value);
    w.gauges.clear();
  }

  /** Asks every worker for its stats now; resolves when all answered (or after a short wait). */
  flushStats(timeoutMs = 500): Promise<void> {
    const live = this.workers.filter((w) => w.ready);
    if (live.length === 0) return Promise.resolve();
    const id = ++this.flushSeq;
    return new Promise((resolve) => {
      const timer = setTimeout(finish, timeoutMs);
      function finish(this: void): void {
        clearTimeout(timer);
        resolve();
      }
      const done = () => {
        this.flushWaiters.delete(id);
        finish();
      };
      this.flushWaiters.set(id, { pending: new Set(live.map((w) => w.index)), done });
      for (const w of live) this.send(w, { t: 'flush', id });
    });
  }

  broadcast(m: MainToWorker): void {
    for (const w of this.workers) if (w.ready) this.send(w, m);
  }

  private send(w: Worker, m: MainToWorker): void {
    try {
      w.child.send(m);
    } catch {
      // A worker that is going away; it will be replaced.
    }
  }

  /** Envoy's watchdog: a loop that stops turning is a miss, then a mega miss, then (if set) killed. */
  private checkWatchdog(): void {
    const wd = this.opts.watchdog;
    const now = Date.now();
    for (const w of this.workers) {
      if (!w.ready) continue;
      const silent = now - w.lastBeat;
      if (silent > wd.missMs && !w.missed) {
        w.missed = true;
        this.watchdogMiss.inc();
        this.workersMiss.inc();
      }
      if (silent > wd.megamissMs && !w.megamissed) {
        w.megamissed = true;
        this.watchdogMegaMiss.inc();
        this.workersMegaMiss.inc();
      }
      if (wd.killMs > 0 && silent > wd.killMs && !w.killed) {
        w.killed = true;
        // No more handoffs to it; those on their way come back when its channel closes.
        w.ready = false;
        log.critical(`worker ${w.index} has not turned its event loop for ${silent} ms: killing it`);
        w.child.kill('SIGKILL');
      }
    }
  }

  get size(): number {
    return this.workers.length;
  }

  /** Per-worker active connection counts (exact balance) by listener. */
  activeByWorker(listener: string): number[] {
    return this.workers.map((w) => w.active.get(listener) ?? 0);
  }

  pids(): number[] {
    return this.workers.map((w) => w.child.pid ?? 0);
  }

  /** /drain_listeners: the workers drain theirs; exact-balance acceptors here stop with them. */
  drainListeners(o: { inboundOnly: boolean; graceful: boolean }, names: Set<string>): void {
    this.broadcast({ t: 'drain', inboundOnly: o.inboundOnly, graceful: o.graceful });
    const stop = () => {
      for (const b of this.bound) if (names.has(b.config.name)) b.acceptor?.close();
    };
    if (!o.graceful) stop();
    else setTimeout(stop, this.opts.drainTimeMs).unref();
  }

  async stop(drainMs: number): Promise<void> {
    this.stopping = true;
    clearInterval(this.watchdogTimer);
    for (const b of this.bound) b.acceptor?.close();
    // The listening sockets close once every worker has closed its copy too.
    for (const b of this.bound) b.socket.close();
    const exits = this.workers.map(
      (w) =>
        new Promise<void>((resolve) => {
          if (w.child.exitCode !== null || w.child.signalCode !== null) return resolve();
          w.child.once('exit', () => resolve());
          const t = setTimeout(() => w.child.kill('SIGKILL'), drainMs + 2000);
          t.unref();
        }),
    );
    this.broadcast({ t: 'stop', drainMs });
    await Promise.all(exits);
    for (const h of this.queued) h.socket.destroy();
    this.queued = [];
  }
}
