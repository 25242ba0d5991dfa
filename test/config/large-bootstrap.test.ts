// A bootstrap with 100k endpoints validates within a bounded memory: peak RSS of
// `herald --mode validate` (VmHWM, read as the process exits) stays far below the
// ~1.1 GB it took when the YAML went through a CST and Document first.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadBootstrap } from '../../src/config/bootstrap-loader.js';
import { writeBigBootstrap } from './big-bootstrap.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const herald = path.join(root, 'bin/herald');
const N = Number(process.env.HERALD_BIG_ENDPOINTS ?? 100_000);
/** Peak RSS allowed for validating N endpoints: Node and the protos take ~70 MB alone. */
const BOUND_MB = 80 + (N / 100_000) * 320;

/** Runs herald under a preload that prints the process's VmHWM to stderr on exit. */
function runMeasured(args: string[]): {
  status: number | null;
  stdout: string;
  stderr: string;
  peakMb: number;
} {
  const preload = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'herald-hwm-')), 'hwm.cjs');
  fs.writeFileSync(
    preload,
    `process.on('exit', () => {
  const fs = require('node:fs');
  const m = /VmHWM:\\s+(\\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  fs.writeSync(2, '\\nVmHWM ' + (m ? m[1] : '0') + '\\n');
});\n`,
  );
  const r = spawnSync(process.execPath, ['--require', preload, herald, ...args], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  const kb = Number(/VmHWM (\d+)/.exec(r.stderr)?.[1] ?? 0);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, peakMb: kb / 1024 };
}

describe('large bootstraps', { skip: process.platform !== 'linux' && 'reads /proc' }, () => {
  it(`validates ${N} STATIC endpoints within ${BOUND_MB} MB peak RSS`, (t) => {
    const file = writeBigBootstrap(N);
    const sizeMb = fs.statSync(file).size / 1024 / 1024;
    const r = runMeasured(['--mode', 'validate', '-c', file]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /configuration '.*' OK/);
    assert.ok(r.peakMb > 0, 'VmHWM was read');
    t.diagnostic(`peak RSS ${r.peakMb.toFixed(0)} MB for a ${sizeMb.toFixed(1)} MB bootstrap`);
    assert.ok(
      r.peakMb < BOUND_MB,
      `peak RSS ${r.peakMb.toFixed(0)} MB for a ${sizeMb.toFixed(1)} MB bootstrap, bound ${BOUND_MB} MB`,
    );
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
  });

  it('loads every endpoint of a large bootstrap into canonical JSON', () => {
    const n = Math.min(N, 20_000);
    const file = writeBigBootstrap(n);
    const b = loadBootstrap({ path: file }) as {
      static_resources: {
        clusters: { name: string; load_assignment: { endpoints: { lb_endpoints: unknown[] }[] } }[];
      };
    };
    const big = b.static_resources.clusters.find((c) => c.name === 'big')!;
    assert.equal(big.load_assignment.endpoints[0]!.lb_endpoints.length, n);
    assert.deepEqual(big.load_assignment.endpoints[0]!.lb_endpoints[n - 1], {
      endpoint: {
        address: {
          socket_address: {
            address: `10.${((n - 1) >> 16) & 255}.${((n - 1) >> 8) & 255}.${(n - 1) & 255}`,
            port_value: 1000 + ((n - 1) % 50000),
          },
        },
      },
    });
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
  });
});
