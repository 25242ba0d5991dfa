// A Herald worker process: gets its config and listening sockets from the
// main process, serves connections end to end, and reports stats, a
// heartbeat (for the watchdog) and closed connections back.
import type net from 'node:net';
import { reopenAccessLogs } from '../accesslog/access-log.js';
import { allLoggers, logger, setThreadId } from '../common/logger.js';
import { useSharedCounters } from '../common/shared-counters.js';
import type { ActiveListener } from '../listener/listener.js';
import { configureConnectionIds } from '../network/connection-id.js';
import type { Counter, Gauge } from '../stats/store.js';
import type { HostSnapshot, OutlierEvent } from '../upstream/cluster.js';
import { applyResources } from '../xds/apply.js';
import { ENDPOINT_TYPE, ROUTE_TYPE, SECRET_TYPE } from '../xds/type-urls.js';
import { Server } from './server.js';
import type { MainToWorker, StatsDelta, WorkerInit, WorkerToMain } from './worker-protocol.js';

const log = logger('main');

/** Gauges the main process owns (membership, health, circuit breakers, server state): not reported. */
const MAIN_OWNED_GAUGE =
  /^(server|listener_manager|cluster_manager|workers)\.|\.(membership_[a-z_]+|health_check\.[a-z_]+|circuit_breakers\.[a-z]+\.[a-z_]+|outlier_detection\.ejections_active)$/;

function send(m: WorkerToMain): void {
  process.send?.(m);
}

let server: Server | undefined;
let xdsQueue: Promise<void> = Promise.resolve();
let outlierEvents: Array<[string, string, OutlierEvent]> = [];
function flushOutlier(): void {
  if (outlierEvents.length === 0) return;
  send({ t: 'od', e: outlierEvents });
  outlierEvents = [];
}
/** DNS results from the main process, by cluster (a cluster made later starts from its entry). */
const resolvedHosts = new Map<string, HostSnapshot[]>();
/** Connections handed over for a listener this worker has not created yet. */
const waitingConns = new Map<string, net.Socket[]>();
const sentCounters = new Map<Counter, number>();
const sentGauges = new Map<Gauge, number>();

function statsDelta(): StatsDelta {
  const d: StatsDelta = { c: [], g: [] };
  if (!server) return d;
  const store = server.context.stats;
  for (const c of store.allCounters()) {
    const before = sentCounters.get(c) ?? 0;
    if (c.value !== before) {
      d.c.push([c.name, c.value - before]);
      sentCounters.set(c, c.value);
    }
  }
  for (const g of store.allGauges()) {
    if (MAIN_OWNED_GAUGE.test(g.name)) continue;
    const before = sentGauges.get(g);
    if (g.value !== before) {
      d.g.push([g.name, g.value]);
      sentGauges.set(g, g.value);
    }
  }
  return d;
}

/**
 * Mirrors net.Server's pauseOnConnect for a socket handed over by the main process: Node starts
 * reading such a socket at once, before the worker's listener filters and codec detection are
 * ready for the bytes. Reading is stopped before any data can arrive (same tick), and the stream is
 * told it is not reading, so a later resume() starts it again.
 */
function pauseHandedOver(socket: net.Socket): void {
  const s = socket as unknown as {
    _handle?: { reading: boolean; readStop(): void };
    _readableState?: { reading: boolean };
  };
  if (s._handle) {
    s._handle.reading = false;
    s._handle.readStop();
  }
  if (s._readableState) s._readableState.reading = false;
  socket.pause();
}

async function init(m: WorkerInit): Promise<void> {
  setThreadId(`w${m.index}`);
  configureConnectionIds(m.index, m.concurrency);
  for (const l of allLoggers()) {
    const v = m.logLevels[l.name];
    if (v !== undefined) l.level = Number(v);
  }
  useSharedCounters(m.sharedCounters);
  for (const [c, hosts] of Object.entries(m.resolvedHosts)) resolvedHosts.set(c, hosts);
  server = new Server(
    {
      concurrency: m.concurrency,
      drainTimeS: m.drainTimeMs / 1000,
      serviceCluster: m.serviceCluster,
      serviceNode: m.serviceNode,
      worker: {
        index: m.index,
        listeners: m.listeners,
        hostHealth: m.hostHealth,
        reportImmediateFail: (c, a) => send({ t: 'hcfail', c, a }),
        resolvedHosts: (c) => resolvedHosts.get(c),
        reportOutlier: (c, a, e) => {
          outlierEvents.push([c, a, e]);
          // Batched: one message per 20 ms at most, not one per request.
          if (outlierEvents.length === 1) setTimeout(flushOutlier, 20).unref();
        },
        dynamic: m.dynamic,
      },
    },
    m.canonical,
  );
  const report = (l: ActiveListener) => {
    const name = l.name;
    l.onConnectionClosed = () => send({ t: 'cx', l: name });
    const waiting = waitingConns.get(name);
    waitingConns.delete(name);
    for (const s of waiting ?? []) l.adopt(s);
    send({ t: 'listener', l: name });
  };
  server.onListenerCreated = report;
  server.setHealthCheckFailed(m.healthCheckFailed);
  await server.start();
  for (const l of server.listeners) report(l);
  const beat = setInterval(() => send({ t: 'hb' }), m.heartbeatMs);
  const flush = setInterval(() => {
    try {
      const d = statsDelta();
      if (d.c.length || d.g.length) send({ t: 'stats', d });
    } catch (e) {
      log.debug(`stats report failed: ${(e as Error).message}`);
    }
  }, m.statsFlushMs);
  process.once('disconnect', () => {
    // The main process is gone: nothing may keep serving on its behalf.
    clearInterval(beat);
    clearInterval(flush);
    process.exit(0);
  });
  send({ t: 'ready' });
}

process.on('message', (m: MainToWorker, handle?: net.Socket) => {
  switch (m.t) {
    case 'init':
      init(m).catch((e) => {
        send({ t: 'fatal', msg: (e as Error).stack ?? String(e) });
        process.exit(1);
      });
      return;
    case 'conn': {
      if (!handle) return;
      pauseHandedOver(handle);
      // Before anything reads it: the main process may now close its copy.
      send({ t: 'got', id: m.id });
      const l = server?.listeners.find((x) => x.name === m.l);
      if (l) l.adopt(handle);
      else {
        // The listener is being replaced here (LDS): it takes the connection once made.
        const q = waitingConns.get(m.l) ?? [];
        q.push(handle);
        waitingConns.set(m.l, q);
        setTimeout(() => {
          if (handle.destroyed || !waitingConns.get(m.l)?.includes(handle)) return;
          handle.destroy();
          send({ t: 'cx', l: m.l });
        }, 5000).unref();
      }
      return;
    }
    case 'hosts':
      resolvedHosts.set(m.c, m.hosts);
      server?.clusterManager.get(m.c)?.applyResolvedHosts(m.hosts);
      return;
    case 'hc':
      server?.clusterManager.get(m.c)?.applyRemoteHealth(m.a, m.b);
      return;
    case 'flush':
      send({ t: 'stats', id: m.id, d: statsDelta() });
      return;
    case 'drain':
      server?.drainListeners({ inboundOnly: m.inboundOnly, graceful: m.graceful });
      return;
    case 'stop':
      void (server?.stop(m.drainMs) ?? Promise.resolve()).then(() => process.exit(0));
      return;
    case 'log':
      for (const l of allLoggers()) {
        const v = m.levels[l.name];
        if (v !== undefined) l.level = Number(v);
      }
      return;
    case 'reopen':
      reopenAccessLogs();
      return;
    case 'hcstate':
      server?.setHealthCheckFailed(m.failed);
      return;
    case 'xds':
      // Validated by the main process already; applied in the order sent.
      if (server && (m.typeUrl === ROUTE_TYPE || m.typeUrl === ENDPOINT_TYPE || m.typeUrl === SECRET_TYPE)) {
        // At once, as in the main process: a listener being applied may wait for these routes.
        void applyResources(server, m.typeUrl, m.resources, m.removed).catch((e) =>
          log.error(`applying ${m.typeUrl} from the main process failed: ${(e as Error).message}`),
        );
      } else if (server) {
        const s = server;
        xdsQueue = xdsQueue
          .then(() => applyResources(s, m.typeUrl, m.resources, m.removed, undefined, m.ports))
          .catch((e) =>
            log.error(`applying ${m.typeUrl} from the main process failed: ${(e as Error).message}`),
          );
      }
      return;
  }
});

// Signals from a terminal reach the whole process group: the main process decides when workers stop.
process.on('SIGINT', () => {});
process.on('SIGTERM', () => {});

process.on('uncaughtException', (e) => {
  log.critical(`worker crashed: ${e.stack ?? e}`);
  process.exit(1);
});
