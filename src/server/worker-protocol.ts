// Messages between Herald's main process and its workers (over the IPC channel).
import type { JsonObject } from '../config/proto-json.js';
import type { HostSnapshot, OutlierEvent } from '../upstream/cluster.js';
import type { XdsResource } from '../xds/apply.js';

export interface WorkerListener {
  name: string;
  port: number;
  /** The fd of the shared listening socket in the worker (kernel balance); absent for exact balance. */
  fd?: number;
}

export interface WorkerInit {
  t: 'init';
  index: number;
  concurrency: number;
  canonical: JsonObject;
  serviceCluster?: string | undefined;
  serviceNode?: string | undefined;
  logLevels: Record<string, string>;
  listeners: WorkerListener[];
  /** Active health-check bits per cluster: [address, bits][]. */
  hostHealth: Record<string, Array<[string, number]>>;
  /** The main process's last DNS result per DNS cluster. */
  resolvedHosts: Record<string, HostSnapshot[]>;
  /** The fd of the shared counters in the worker. */
  sharedCounters: number;
  /** Dynamic resources in force, in the order to apply them (clusters, endpoints, listeners, routes). */
  dynamic: Array<{ typeUrl: string; resources: XdsResource[]; ports?: Record<string, number> }>;
  heartbeatMs: number;
  statsFlushMs: number;
  /** --drain-time-s, in ms: how long connections of a listener LDS replaced may go on. */
  drainTimeMs: number;
  /** The server fails health checks (admin /healthcheck/fail). */
  healthCheckFailed: boolean;
}

export type MainToWorker =
  | WorkerInit
  /** An exact-balance connection (the socket rides along); answered with 'got' and the id. */
  | { t: 'conn'; l: string; id: number }
  | { t: 'hc'; c: string; a: string; b: number }
  | { t: 'hosts'; c: string; hosts: HostSnapshot[] }
  | { t: 'flush'; id: number }
  | { t: 'drain'; inboundOnly: boolean; graceful: boolean }
  | { t: 'stop'; drainMs: number }
  | { t: 'log'; levels: Record<string, string> }
  | { t: 'reopen' }
  /** Admin /healthcheck/fail (true) or /healthcheck/ok (false). */
  | { t: 'hcstate'; failed: boolean }
  /** Validated xDS resources to apply; `ports`: where the main process bound new listeners. */
  | {
      t: 'xds';
      typeUrl: string;
      resources: XdsResource[];
      removed: string[];
      ports?: Record<string, number>;
    };

export interface StatsDelta {
  /** [name, increment] for counters that moved. */
  c: Array<[string, number]>;
  /** [name, value] for gauges that changed. */
  g: Array<[string, number]>;
}

export type WorkerToMain =
  | { t: 'ready' }
  | { t: 'hb' }
  | { t: 'cx'; l: string }
  /** The connection handed over as `id` has arrived: the main process closes its copy. */
  | { t: 'got'; id: number }
  /** This worker has created the listener: it can take its connections. */
  | { t: 'listener'; l: string }
  | { t: 'stats'; id?: number; d: StatsDelta }
  | { t: 'hcfail'; c: string; a: string }
  /** Outlier detection inputs, batched: [cluster, host address, event]. */
  | { t: 'od'; e: Array<[string, string, OutlierEvent]> }
  | { t: 'fatal'; msg: string };
