// Runs proto work (loading and validating a bootstrap, redacting a config
// dump) on a short-lived worker thread. Parsing Envoy's protos grows the heap
// by ~20 MB that V8 does not give back; in a worker thread that memory goes
// away with the thread, and the serving process stays small.
import { Worker } from 'node:worker_threads';
import type { BootstrapSource } from './bootstrap-loader.js';
import { ConfigError, ConfigErrors } from './errors.js';
import type { Json, JsonObject } from './proto-json.js';

export type ProtoTask =
  | { task: 'loadBootstrap'; source: BootstrapSource }
  | { task: 'redactBootstrap'; value: JsonObject };

export type ProtoTaskResult =
  | { ok: true; value: Json }
  | { ok: false; errors: { path: string; detail: string }[] }
  | { ok: false; crash: string };

export function runProtoTask(task: ProtoTask): Promise<Json> {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL('./proto-worker-main.js', import.meta.url), { workerData: task });
    let done = false;
    w.once('message', (r: ProtoTaskResult) => {
      done = true;
      void w.terminate();
      if (r.ok) resolve(r.value);
      else if ('errors' in r)
        reject(new ConfigErrors(r.errors.map((e) => new ConfigError(e.path, e.detail))));
      else reject(new Error(r.crash));
    });
    w.once('error', (e) => {
      if (!done) reject(e);
    });
    w.once('exit', (code) => {
      if (!done) reject(new Error(`proto worker exited with code ${code}`));
    });
  });
}

export async function loadBootstrapIsolated(source: BootstrapSource): Promise<JsonObject> {
  return (await runProtoTask({ task: 'loadBootstrap', source })) as JsonObject;
}
