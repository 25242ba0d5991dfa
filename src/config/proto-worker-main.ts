// Child-process entry for runProtoTask (see proto-worker.ts): one task, one answer, exit.
import { BOOTSTRAP_TYPE, loadBootstrap } from './bootstrap-loader.js';
import { envoyProtos } from './envoy-protos.js';
import { ConfigError, ConfigErrors } from './errors.js';
import { redactSensitive } from './proto-json.js';
import type { ProtoTask, ProtoTaskResult } from './proto-worker.js';

function run(t: ProtoTask): ProtoTaskResult {
  try {
    if (t.task === 'loadBootstrap') return { ok: true, value: loadBootstrap(t.source) };
    const protos = envoyProtos();
    return { ok: true, value: redactSensitive(protos, protos.lookupType(BOOTSTRAP_TYPE)!, t.value) };
  } catch (e) {
    if (e instanceof ConfigErrors)
      return { ok: false, errors: e.errors.map((x) => ({ path: x.path, detail: x.detail })) };
    if (e instanceof ConfigError) return { ok: false, errors: [{ path: e.path, detail: e.detail }] };
    return { ok: false, crash: (e as Error).stack ?? String(e) };
  }
}

process.once('message', (t: ProtoTask) => {
  // Exits once the answer is sent (or the parent goes away).
  process.send!(run(t), () => process.disconnect());
});
