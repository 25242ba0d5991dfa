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
import { type ListenSocket, makeListenSocket } from '../listener/listen-socket.js';
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
}

class Worker {
  child!: ChildProcess;
  ready = false;
  lastBeat = Date.now();
  missed = false;
  megamissed = false;
  killed = false;
  /** Active connections per listener, for exact balance. */
  readonly active = new Map<string, number>();
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
      if (config.exactBalance) {
        // Paused on accept: the worker's listener filters read the first bytes, not this process.
        const acceptor = net.createServer({ pauseOnConnect: true }, (s) => this.dispatch(b, s));
        acceptor.listen({ fd: socket.fd });
        b.acceptor = acceptor;
      }
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
    const acceptor = net.createServer({ pauseOnConnect: true }, (s) => this.dispatch(b, s));
    acceptor.listen({ fd: socket.fd });
    b.acceptor = acceptor;
    this.bound.push(b);
    log.info(`listener '${config.name}' (LDS) bound to ${host}:${socket.port}`);
    return socket.port;
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
    b!.acceptor?.close();
    b!.socket.close();
  }

  async start(): Promise<void> {
    const ready: Promise<void>[] = [];
    for (let i = 0; i < this.opts.concurrency; i++) {
      const w = new Worker(i);
      this.workers.push(w);
      ready.push(this.spawn(w));
    }
    await Promise.all(ready);
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
    const child = fork(WORKER_SCRIPT, [], { stdio, serialization: 'advanced' });
    w.child = child;
    w.ready = false;
    w.killed = false;
    w.lastBeat = Date.now();
    w.missed = w.megamissed = false;
    w.active.clear();
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
    child.send(init);
    return new Promise((resolve, reject) => {
      child.on('message', (m: WorkerToMain) => {
        if (m.t === 'ready') {
          w.ready = true;
          resolve();
        } else this.onMessage(w, m);
      });
      child.once('exit', (code, signal) => {
        w.ready = false;
        this.dropGauges(w);
        if (!w.child || w.child !== child) return;
        if (this.stopping) return;
        if (!w.killed && code !== 0)
          log.error(`worker ${w.index} exited (${signal ?? code}); starting a new one`);
        reject(new Error(`worker ${w.index} exited during start`));
        // Replaced, with the same listening sockets: the listeners never stop accepting.
        this.spawn(w).catch((e) => log.error(`worker ${w.index} could not be restarted: ${e.message}`));
      });
    });
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

  /** Exact balance: the connection goes to the ready worker with the fewest on this listener. */
  private dispatch(b: BoundListener, socket: net.Socket): void {
    let best: Worker | undefined;
    let bestN = Number.POSITIVE_INFINITY;
    for (const w of this.workers) {
      if (!w.ready) continue;
      const n = w.active.get(b.config.name) ?? 0;
      if (n < bestN) {
        best = w;
        bestN = n;
      }
    }
    if (!best) {
      socket.destroy();
      return;
    }
    best.active.set(b.config.name, bestN + 1);
    const msg: MainToWorker = { t: 'conn', l: b.config.name };
    best.child.send(msg, socket, (err) => {
      if (err) socket.destroy();
    });
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
  }
}
