#!/usr/bin/env node
// Bundles the compiled entry points (the CLI, the proto child, a worker process)
// into dist/bundle/, which `npm start` and bin/herald run. One file per entry
// plus shared chunks, with dynamic imports kept lazy: a serving process then
// loads a handful of files instead of ~100 modules, and V8 no longer runs its
// optimizing compiler over module resolution at startup (idle RSS about 5 MB
// lower; see BENCHMARKS.md). The entries sit side by side because the code
// finds proto-worker-main.js and worker-main.js next to itself.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// Chunk names change with their content: start from an empty directory.
fs.rmSync(path.join(root, 'dist/bundle'), { recursive: true, force: true });
await build({
  absWorkingDir: root,
  entryPoints: ['dist/src/cli/main.js', 'dist/src/config/proto-worker-main.js', 'dist/src/server/worker-main.js'],
  outdir: 'dist/bundle',
  entryNames: '[name]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // Native (koffi) or only needed in the proto child / for xDS: loaded from node_modules.
  external: ['koffi', 'protobufjs', '@grpc/*', 'yaml'],
  // CommonJS code inside the bundle may call require().
  banner: {
    js: "import { createRequire as __heraldCreateRequire } from 'node:module'; const require = __heraldCreateRequire(import.meta.url);",
  },
  logLevel: 'warning',
});
