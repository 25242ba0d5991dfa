// Application logging in Envoy's default format:
//   [%Y-%m-%d %T.%e][%t][%l][%n] %v
// with Envoy's component loggers, each with its own level. A logger at a level
// that is off costs one integer comparison: hot paths test `log.on(LEVEL)`
// before building a message.

export const LEVELS = ['trace', 'debug', 'info', 'warning', 'error', 'critical', 'off'] as const;
export type LevelName = (typeof LEVELS)[number];
export enum Level {
  trace = 0,
  debug = 1,
  info = 2,
  warning = 3,
  error = 4,
  critical = 5,
  off = 6,
}

/** Envoy's component loggers (a subset of its list: the ones Herald has code for, plus common names, so `--component-log-level` lines written for Envoy load). */
export const COMPONENTS = [
  'admin',
  'alternate_protocols_cache',
  'assert',
  'backtrace',
  'config',
  'connection',
  'conn_handler',
  'dns',
  'envoy_bug',
  'file',
  'filter',
  'grpc',
  'happy_eyeballs',
  'hc',
  'health_checker',
  'http',
  'http2',
  'init',
  'io',
  'main',
  'matcher',
  'misc',
  'pool',
  'quic',
  'rds',
  'router',
  'runtime',
  'secret',
  'stats',
  'tracing',
  'udp',
  'upstream',
  'tls',
  'websocket',
  'lua',
  'wasm',
  'rbac',
  'xds',
] as const;
export type Component = (typeof COMPONENTS)[number];

export function parseLevel(name: string): Level | undefined {
  const n = name === 'warn' ? 'warning' : name;
  const i = LEVELS.indexOf(n as LevelName);
  return i < 0 ? undefined : (i as Level);
}

type Sink = (line: string) => void;
let sink: Sink = (line) => process.stderr.write(line);
let threadId = String(process.pid);

function two(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

function timestamp(d: Date): string {
  const ms = d.getMilliseconds();
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${ms < 10 ? '00' : ms < 100 ? '0' : ''}${ms}`;
}

export class Logger {
  level: Level = Level.info;
  constructor(readonly name: Component) {}

  on(level: Level): boolean {
    return level >= this.level;
  }

  log(level: Level, msg: string): void {
    if (level < this.level) return;
    sink(`[${timestamp(new Date())}][${threadId}][${LEVELS[level]}][${this.name}] ${msg}\n`);
  }
  trace(msg: string): void {
    this.log(Level.trace, msg);
  }
  debug(msg: string): void {
    this.log(Level.debug, msg);
  }
  info(msg: string): void {
    this.log(Level.info, msg);
  }
  warn(msg: string): void {
    this.log(Level.warning, msg);
  }
  error(msg: string): void {
    this.log(Level.error, msg);
  }
  critical(msg: string): void {
    this.log(Level.critical, msg);
  }
}

const loggers = new Map<Component, Logger>(COMPONENTS.map((c) => [c, new Logger(c)]));

export function logger(c: Component): Logger {
  return loggers.get(c)!;
}

export function allLoggers(): Logger[] {
  return [...loggers.values()];
}

export function setAllLevels(level: Level): void {
  for (const l of loggers.values()) l.level = level;
}

/** Applies `--component-log-level upstream:debug,connection:trace`; throws on an unknown name. */
export function applyComponentLevels(spec: string): void {
  for (const part of spec.split(',').filter(Boolean)) {
    const [name, lvl] = part.split(':');
    const l = loggers.get(name as Component);
    const level = parseLevel(lvl ?? '');
    if (!l) throw new Error(`unknown logger component '${name}' (known: ${COMPONENTS.join(', ')})`);
    if (level === undefined) throw new Error(`invalid log level '${lvl}' for component '${name}'`);
    l.level = level;
  }
}

export function setLogSink(s: Sink): void {
  sink = s;
}

export function setThreadId(id: string): void {
  threadId = id;
}
