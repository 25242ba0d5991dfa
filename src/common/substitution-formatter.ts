// Envoy's command operators (%DOWNSTREAM_REMOTE_ADDRESS%, %REQ(x-id)%, ...),
// compiled once into a list of literal strings and getter functions. Used by
// header values now and by access logs later. An unknown operator is a config
// error that names it.
import os from 'node:os';
import type { StreamInfo } from '../http/stream-info.js';
import { responseFlagsLong, responseFlagsShort } from '../http/stream-info.js';
import { formatAddress } from '../network/address.js';

export type HeaderValue = string | string[] | undefined;
export type Headers = Record<string, HeaderValue>;

export interface FormatContext {
  info: StreamInfo;
  requestHeaders?: Headers | undefined;
  responseHeaders?: Headers | undefined;
  responseTrailers?: Headers | undefined;
  protocol: string;
  remoteAddress: string;
  remotePort: number;
  directRemoteAddress: string;
  directRemotePort: number;
  localAddress: string;
  localPort: number;
}

type Getter = (c: FormatContext) => string | undefined;

/** Envoy prints durations as whole milliseconds, "-" when the event did not happen. */
function ms(v: number): string | undefined {
  return v < 0 ? undefined : String(Math.floor(v));
}

function header(h: Headers | undefined, name: string): string | undefined {
  const v = h?.[name];
  return Array.isArray(v) ? v.join(',') : v;
}

const SIMPLE: Record<string, Getter> = {
  DOWNSTREAM_REMOTE_ADDRESS: (c) => formatAddress(c.remoteAddress, c.remotePort),
  DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT: (c) => c.remoteAddress,
  DOWNSTREAM_DIRECT_REMOTE_ADDRESS: (c) => formatAddress(c.directRemoteAddress, c.directRemotePort),
  DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT: (c) => c.directRemoteAddress,
  DOWNSTREAM_LOCAL_ADDRESS: (c) => formatAddress(c.localAddress, c.localPort),
  DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT: (c) => c.localAddress,
  DOWNSTREAM_LOCAL_PORT: (c) => String(c.localPort),
  PROTOCOL: (c) => c.protocol,
  HOSTNAME: () => os.hostname(),
  START_TIME: (c) => new Date(c.info.startTime).toISOString(),
  DURATION: (c) => ms(c.info.lastResponseByteMs),
  REQUEST_DURATION: (c) => ms(c.info.lastRequestByteMs),
  RESPONSE_DURATION: (c) => ms(c.info.firstResponseByteMs),
  RESPONSE_TX_DURATION: (c) =>
    c.info.lastResponseByteMs < 0 || c.info.firstResponseByteMs < 0
      ? undefined
      : String(Math.floor(c.info.lastResponseByteMs - c.info.firstResponseByteMs)),
  RESPONSE_CODE: (c) => String(c.info.responseCode),
  RESPONSE_CODE_DETAILS: (c) => c.info.responseCodeDetails || undefined,
  RESPONSE_FLAGS: (c) => responseFlagsShort(c.info.responseFlags),
  RESPONSE_FLAGS_LONG: (c) => responseFlagsLong(c.info.responseFlags),
  UPSTREAM_CLUSTER: (c) => c.info.upstreamCluster || undefined,
  UPSTREAM_HOST: (c) => c.info.upstreamHost || undefined,
  ROUTE_NAME: (c) => c.info.routeName || undefined,
  BYTES_RECEIVED: (c) => String(c.info.bytesReceived),
  BYTES_SENT: (c) => String(c.info.bytesSent),
  UPSTREAM_REQUEST_ATTEMPT_COUNT: (c) => String(c.info.attemptCount),
  UPSTREAM_TRANSPORT_FAILURE_REASON: (c) => c.info.upstreamTransportFailureReason || undefined,
  UPSTREAM_LOCAL_ADDRESS: (c) => {
    const ci = c.info.upstreamConnection?.connectionInfo?.();
    return ci ? formatAddress(ci.localAddress, ci.localPort) : undefined;
  },
  UPSTREAM_CONNECTION_ID: (c) => {
    const ci = c.info.upstreamConnection?.connectionInfo?.();
    return ci ? String(ci.connectionId) : undefined;
  },
  CONNECTION_ID: (c) => (c.info.connectionId < 0 ? undefined : String(c.info.connectionId)),
  STREAM_ID: (c) => c.info.streamId || undefined,
  REQUESTED_SERVER_NAME: (c) => c.info.requestedServerName || undefined,
  CONNECTION_TERMINATION_DETAILS: (c) => c.info.connectionTerminationDetails || undefined,
};

export class FormatError extends Error {}

/** A compiled format string. `format()` renders it; missing values print `-` (or are empty in headers). */
export class SubstitutionFormatter {
  private readonly parts: Array<string | Getter>;

  constructor(
    template: string,
    private readonly missing = '-',
  ) {
    this.parts = compile(template);
  }

  get isLiteral(): boolean {
    return this.parts.every((p) => typeof p === 'string');
  }

  format(c: FormatContext): string {
    let out = '';
    for (const p of this.parts) out += typeof p === 'string' ? p : (p(c) ?? this.missing);
    return out;
  }
}

function compile(t: string): Array<string | Getter> {
  const parts: Array<string | Getter> = [];
  let lit = '';
  let i = 0;
  while (i < t.length) {
    const ch = t[i]!;
    if (ch !== '%') {
      lit += ch;
      i++;
      continue;
    }
    if (t[i + 1] === '%') {
      lit += '%';
      i += 2;
      continue;
    }
    const end = findClose(t, i + 1);
    if (end < 0) throw new FormatError(`unterminated command operator in '${t}'`);
    const op = t.slice(i + 1, end);
    if (lit) parts.push(lit);
    lit = '';
    parts.push(operator(op));
    i = end + 1;
  }
  if (lit) parts.push(lit);
  return parts;
}

/** Finds the '%' that closes an operator, skipping over parenthesised arguments. */
function findClose(t: string, from: number): number {
  let depth = 0;
  for (let j = from; j < t.length; j++) {
    const c = t[j];
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === '%' && depth === 0) return j;
  }
  return -1;
}

function operator(op: string): Getter {
  const simple = SIMPLE[op];
  if (simple) return simple;
  const m = /^(REQ|RESP|TRAILER)\(([^)]*)\)(?::(\d+))?$/.exec(op);
  if (m) {
    const [main, alt] = m[2]!.split('?').map((s) => s.trim().toLowerCase());
    if (!main) throw new FormatError(`empty header name in %${op}%`);
    const max = m[3] ? Number(m[3]) : undefined;
    const which =
      m[1] === 'REQ' ? 'requestHeaders' : m[1] === 'RESP' ? 'responseHeaders' : 'responseTrailers';
    // Herald's header maps hold HTTP/1 Host as :authority, like Envoy's.
    const name = main === 'host' ? ':authority' : main;
    const altName = alt === 'host' ? ':authority' : alt;
    return (c) => {
      let v = header(c[which], name);
      if (v === undefined && altName) v = header(c[which], altName);
      return v !== undefined && max !== undefined ? v.slice(0, max) : v;
    };
  }
  const st = /^START_TIME\((.*)\)$/s.exec(op);
  if (st) {
    const fmt = st[1]!;
    return (c) => strftime(fmt, c.info.startTime);
  }
  throw new FormatError(`unknown command operator %${op}%`);
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const pad = (n: number, w = 2) => String(n).padStart(w, '0');

/**
 * The strftime subset Envoy's START_TIME takes, in UTC: %Y %y %m %d %e %H %M %S %j %a %b
 * %z %Z %s %T %D %F %%, fractional seconds %Nf (N digits, %f = 9) and absl's %EnS
 * (seconds with n decimals, as in Envoy's default %Y-%m-%dT%H:%M:%E3SZ).
 */
export function strftime(fmt: string, ms: number): string {
  const d = new Date(ms);
  const frac = (digits: number) =>
    String(d.getUTCMilliseconds()).padStart(3, '0').padEnd(9, '0').slice(0, digits);
  return fmt.replace(
    /%(E(\d)S|(\d)?f|[YymdeHMSjabzZsTDF%])/g,
    (_m, spec: string, eDigits?: string, fDigits?: string) => {
      if (eDigits !== undefined)
        return `${pad(d.getUTCSeconds())}${Number(eDigits) > 0 ? `.${frac(Number(eDigits))}` : ''}`;
      if (spec.endsWith('f')) return frac(fDigits ? Number(fDigits) : 9);
      switch (spec) {
        case 'Y':
          return String(d.getUTCFullYear());
        case 'y':
          return pad(d.getUTCFullYear() % 100);
        case 'm':
          return pad(d.getUTCMonth() + 1);
        case 'd':
          return pad(d.getUTCDate());
        case 'e':
          return String(d.getUTCDate()).padStart(2, ' ');
        case 'H':
          return pad(d.getUTCHours());
        case 'M':
          return pad(d.getUTCMinutes());
        case 'S':
          return pad(d.getUTCSeconds());
        case 'j':
          return pad(Math.floor((ms - Date.UTC(d.getUTCFullYear(), 0, 1)) / 86400000) + 1, 3);
        case 'a':
          return DAYS[d.getUTCDay()]!;
        case 'b':
          return MONTHS[d.getUTCMonth()]!;
        case 'z':
          return '+0000';
        case 'Z':
          return 'UTC';
        case 's':
          return String(Math.floor(ms / 1000));
        case 'T':
          return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
        case 'D':
          return `${pad(d.getUTCMonth() + 1)}/${pad(d.getUTCDate())}/${pad(d.getUTCFullYear() % 100)}`;
        case 'F':
          return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
        default:
          return '%';
      }
    },
  );
}
