// Access logs: a formatter (Envoy's command operators) and a sink. Lines are
// written with one write() each, so they never interleave mid-line, and file
// sinks are Node write streams (the disk write happens off the event loop).
import fs from 'node:fs';
import {
  type FormatContext,
  type FormatError,
  SubstitutionFormatter,
} from '../common/substitution-formatter.js';
import type { JsonObject } from '../config/proto-json.js';
import type { Reader } from '../config/reader.js';
import { readDataSource } from '../router/route-config.js';
import { compileAccessLogFilter } from './access-log-filter.js';

export interface AccessLogger {
  log(c: FormatContext): void;
}

/** Envoy's default access log format. */
export const DEFAULT_FORMAT =
  '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% ' +
  '%BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" ' +
  '"%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"\n';

export type LineFormatter = (c: FormatContext) => string;

function text(r: Reader, key: string, template: string): LineFormatter {
  let f: SubstitutionFormatter;
  try {
    f = new SubstitutionFormatter(template);
  } catch (e) {
    throw r.error(key, (e as FormatError).message);
  }
  return (c) => f.format(c);
}

function json(r: Reader, key: string, struct: JsonObject, omitEmpty: boolean): LineFormatter {
  const fields: Array<[string, SubstitutionFormatter, boolean]> = [];
  for (const [k, v] of Object.entries(struct)) {
    if (typeof v !== 'string')
      throw r.error(
        key,
        `json_format value of '${k}' must be a string (nested objects are not supported yet)`,
      );
    try {
      // A value that is one operator alone keeps a number's type, as Envoy's typed JSON does.
      fields.push([k, new SubstitutionFormatter(v, ''), /^%[A-Z_]+(\([^)]*\))?(:\d+)?%$/.test(v)]);
    } catch (e) {
      throw r.error(key, (e as FormatError).message);
    }
  }
  return (c) => {
    const out: Record<string, unknown> = {};
    for (const [k, f, single] of fields) {
      const v = f.format(c);
      if (v === '') {
        if (!omitEmpty) out[k] = null;
      } else out[k] = single && /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v;
    }
    return `${JSON.stringify(out)}\n`;
  };
}

/** An access logger's `log_format` (SubstitutionFormatString), else Envoy's default format. */
export function compileLogFormat(holder: Reader): LineFormatter {
  const r = holder.msg('log_format');
  if (!r) return text(holder, 'log_format', DEFAULT_FORMAT);
  const omitEmpty = r.bool('omit_empty_values');
  if (r.has('formatters')) throw r.error('formatters', 'formatter extensions are not supported yet');
  r.ignore('content_type'); // only used for local-reply bodies, not for access logs
  if (r.has('text_format_source')) {
    const t = readDataSource(r.msg('text_format_source')!).toString('utf8');
    return text(r, 'text_format_source', t);
  }
  if (r.has('text_format')) return text(r, 'text_format', r.str('text_format', ''));
  if (r.has('json_format')) return json(r, 'json_format', r.raw('json_format') as JsonObject, omitEmpty);
  return text(r, 'format', DEFAULT_FORMAT);
}

const fileStreams = new Map<string, fs.WriteStream>();

/** A line sink: stdout, stderr, or an append-mode file shared by every logger that names it. */
export function lineSink(path: string): (line: string) => void {
  if (path === '/dev/stdout') return (l) => process.stdout.write(l);
  if (path === '/dev/stderr') return (l) => process.stderr.write(l);
  let s = fileStreams.get(path);
  if (!s) {
    s = fs.createWriteStream(path, { flags: 'a' });
    s.on('error', () => {}); // a failing disk must not take the proxy down
    fileStreams.set(path, s);
  }
  // Looked up per line, so /reopen_logs takes effect for every logger of the file.
  return (l) => {
    fileStreams.get(path)?.write(l);
  };
}

/** Reopens every access-log file (log rotation: /reopen_logs, SIGUSR1). */
export function reopenAccessLogs(): void {
  for (const [path, s] of fileStreams) {
    s.end();
    const n = fs.createWriteStream(path, { flags: 'a' });
    n.on('error', () => {});
    fileStreams.set(path, n);
  }
}

/** A logger writing `log_format` lines of its config to a path (or /dev/stdout, /dev/stderr). */
export function formattedLogger(r: Reader, path: string): AccessLogger {
  const format = compileLogFormat(r);
  const sink = lineSink(path);
  return { log: (c) => sink(format(c)) };
}

/** An AccessLog entry (name, typed_config, filter) compiled through the registry. */
export function compileAccessLog(a: Reader, compile: (r: Reader) => AccessLogger): AccessLogger {
  const f = a.msg('filter');
  const logger = compile(a);
  if (!f) return logger;
  const filter = compileAccessLogFilter(f);
  return { log: (c) => (filter(c) ? logger.log(c) : undefined) };
}
