// A temporary access-log file and a reader that waits for lines (writes are asynchronous).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface LogFile {
  path: string;
  /** The HCM access_log YAML block writing `format` to this file. */
  yaml(format: string): string;
  /** Waits until the file has at least `n` lines, then returns all of them. */
  lines(n: number, timeoutMs?: number): Promise<string[]>;
  /** Waits for a line matching `re`; returns it, or undefined after the timeout. */
  find(re: RegExp, timeoutMs?: number): Promise<string | undefined>;
}

export function tempLog(prefix = 'herald-log-'): LogFile {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const file = path.join(dir, 'access.log');
  const read = () =>
    (fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '').split('\n').filter((l) => l.length > 0);
  return {
    path: file,
    find: async (re, timeoutMs = 5000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const hit = read().find((l) => re.test(l));
        if (hit !== undefined || Date.now() > deadline) return hit;
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    yaml: (format) => `access_log:
- name: envoy.access_loggers.file
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
    path: ${file}
    log_format: { text_format_source: { inline_string: "${format}\\n" } }`,
    lines: async (n, timeoutMs = 5000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
        const lines = text.split('\n').filter((l) => l.length > 0);
        if (lines.length >= n || Date.now() > deadline) return lines;
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
}
