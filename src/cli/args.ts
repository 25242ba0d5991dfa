// Envoy's command line, as far as Herald implements it.
import os from 'node:os';
import { parseArgs } from 'node:util';

export interface CliOptions {
  configPath: string | undefined;
  configYaml: string | undefined;
  mode: 'serve' | 'validate';
  concurrency: number;
  logLevel: string;
  componentLogLevel: string | undefined;
  drainTimeS: number;
  serviceCluster: string | undefined;
  serviceNode: string | undefined;
  baseId: number;
  help: boolean;
  version: boolean;
}

export const USAGE = `Usage: herald [options]

Herald, an Envoy-compatible proxy. With no -c and no --config-yaml it runs its
embedded demo (front listener 127.0.0.1:10000, admin 127.0.0.1:9901).

Options:
  -c, --config-path FILE        Envoy v3 bootstrap, YAML or JSON
      --config-yaml STRING      YAML merged over the -c file (as Envoy does)
      --mode serve|validate     validate: check the config, print OK or the errors, exit 0/1
      --concurrency N           worker processes (default: one per CPU, as Envoy; 1 runs everything in one process)
  -l, --log-level LEVEL         trace, debug, info, warning, error, critical, off (default: info)
      --component-log-level S   per component, e.g. upstream:debug,connection:trace
      --drain-time-s N          seconds to drain connections on shutdown (default: 600)
      --service-cluster NAME    node.cluster, when the bootstrap has none
      --service-node NAME       node.id, when the bootstrap has none
      --base-id N               accepted for compatibility (no hot restart)
      --version                 print the version and exit
  -h, --help                    this text
`;

export class UsageError extends Error {}

export function parseCli(argv: string[]): CliOptions {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        'config-path': { type: 'string', short: 'c' },
        'config-yaml': { type: 'string' },
        mode: { type: 'string' },
        concurrency: { type: 'string' },
        'log-level': { type: 'string', short: 'l' },
        'component-log-level': { type: 'string' },
        'drain-time-s': { type: 'string' },
        'service-cluster': { type: 'string' },
        'service-node': { type: 'string' },
        'base-id': { type: 'string' },
        version: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const v = parsed.values as Record<string, string | boolean | undefined>;
  const int = (name: string, def: number, min = 0): number => {
    const raw = v[name];
    if (raw === undefined) return def;
    if (typeof raw !== 'string' || !/^\d+$/.test(raw) || Number(raw) < min)
      throw new UsageError(`--${name} expects a whole number${min ? ` >= ${min}` : ''}, got '${raw}'`);
    return Number(raw);
  };
  const mode = (v.mode as string | undefined) ?? 'serve';
  if (mode !== 'serve' && mode !== 'validate')
    throw new UsageError(`--mode must be serve or validate (init_only is not supported), got '${mode}'`);
  return {
    configPath: v['config-path'] as string | undefined,
    configYaml: v['config-yaml'] as string | undefined,
    mode,
    concurrency: int('concurrency', defaultConcurrency(), 1),
    logLevel: (v['log-level'] as string | undefined) ?? 'info',
    componentLogLevel: v['component-log-level'] as string | undefined,
    drainTimeS: int('drain-time-s', 600),
    serviceCluster: v['service-cluster'] as string | undefined,
    serviceNode: v['service-node'] as string | undefined,
    baseId: int('base-id', 0),
    help: v.help === true,
    version: v.version === true,
  };
}

/** Envoy's default --concurrency: one worker per hardware thread. */
function defaultConcurrency(): number {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}
