// Runs proto work (loading and validating a bootstrap, redacting a config
// dump) in a short-lived child process. Parsing Envoy's protos grows the heap
// by ~20 MB that V8 does not give back, and touches code (YAML, protobufjs,
// the optimizing compiler's work on them) whose pages would stay resident in
// the serving process; in a child, all of it goes away when the child exits.
// (A worker thread gave the heap back but kept ~4 MB of those pages.)
import { fork } from 'node:child_process';
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
    const child = fork(new URL('./proto-worker-main.js', import.meta.url), [], {
      // Not the parent's flags (--inspect, --cpu-prof, ...): this is a helper, not Herald.
      execArgv: [],
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let done = false;
    child.once('message', (r: ProtoTaskResult) => {
      done = true;
      child.disconnect();
      if (r.ok) resolve(r.value);
      else if ('errors' in r)
        reject(new ConfigErrors(r.errors.map((e) => new ConfigError(e.path, e.detail))));
      else reject(new Error(r.crash));
    });
    child.once('error', (e) => {
      if (!done) {
        done = true;
        reject(e);
      }
    });
    child.once('exit', (code, signal) => {
      if (!done) {
        done = true;
        reject(new Error(`proto worker exited with ${signal ?? `code ${code}`}`));
      }
    });
    child.send(task);
  });
}

export async function loadBootstrapIsolated(source: BootstrapSource): Promise<JsonObject> {
  return (await runProtoTask({ task: 'loadBootstrap', source })) as JsonObject;
}
