// `herald`: Envoy's command line over Herald's server.
import { reopenAccessLogs } from '../accesslog/access-log.js';
import { applyComponentLevels, logger, parseLevel, setAllLevels } from '../common/logger.js';
import { ConfigError, ConfigErrors } from '../config/errors.js';
import { Server } from '../server/server.js';
import { VERSION } from '../server/version.js';
import { type CliOptions, parseCli, USAGE, UsageError } from './args.js';

const log = logger('main');

function configErrorLines(e: unknown): string[] | undefined {
  if (e instanceof ConfigErrors) return e.errors.map((x) => x.message);
  if (e instanceof ConfigError) return [e.message];
  return undefined;
}

function fail(msg: string): never {
  process.stderr.write(`${msg}\n`);
  process.exit(1);
}

export async function main(argv: string[]): Promise<void> {
  let opts: CliOptions;
  try {
    opts = parseCli(argv);
  } catch (e) {
    if (e instanceof UsageError) fail(`herald: ${e.message}\n\n${USAGE}`);
    throw e;
  }
  if (opts.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (opts.version) {
    process.stdout.write(`herald version: ${VERSION}\n`);
    return;
  }
  const level = parseLevel(opts.logLevel);
  if (level === undefined) fail(`herald: invalid --log-level '${opts.logLevel}'`);
  setAllLevels(level);
  if (opts.componentLogLevel) {
    try {
      applyComponentLevels(opts.componentLogLevel);
    } catch (e) {
      fail(`herald: ${(e as Error).message}`);
    }
  }

  const source = opts.configPath ?? '--config-yaml';
  if (opts.mode === 'validate') {
    if (opts.configPath === undefined && opts.configYaml === undefined)
      fail('herald: --mode validate needs -c FILE or --config-yaml');
    try {
      // Loaded only here: the serving process never needs the protos' code in its own heap.
      const { validateConfig } = await import('../server/validate.js');
      validateConfig(opts);
    } catch (e) {
      const lines = configErrorLines(e);
      if (!lines) throw e;
      fail(`error initializing configuration '${source}':\n${lines.map((l) => `  ${l}`).join('\n')}`);
    }
    process.stdout.write(`configuration '${source}' OK\n`);
    return;
  }

  let configYaml = opts.configYaml;
  let closeDemo: (() => Promise<void>) | undefined;
  if (opts.configPath === undefined && configYaml === undefined) {
    // Loaded only here: the demo's upstreams bring node:http, which serving a config never needs.
    const { demoConfigYaml, startDemoUpstreams } = await import('../demo/demo.js');
    const up = await startDemoUpstreams();
    closeDemo = up.close;
    configYaml = demoConfigYaml({ listenerPort: 10000, adminPort: 9901 }, up.ports);
    log.info(`demo: upstream v1 on 127.0.0.1:${up.ports.v1}, v2 on 127.0.0.1:${up.ports.v2}`);
  }

  let server: Server;
  try {
    server = await Server.create({
      configPath: opts.configPath,
      configYaml,
      concurrency: opts.concurrency,
      drainTimeS: opts.drainTimeS,
      serviceCluster: opts.serviceCluster,
      serviceNode: opts.serviceNode,
      commandLine: {
        config_path: opts.configPath ?? '',
        concurrency: opts.concurrency,
        log_level: opts.logLevel,
        component_log_level: opts.componentLogLevel ?? '',
        drain_time: `${opts.drainTimeS}s`,
        service_cluster: opts.serviceCluster ?? '',
        service_node: opts.serviceNode ?? '',
        base_id: String(opts.baseId),
        mode: 'Serve',
      },
    });
  } catch (e) {
    const lines = configErrorLines(e);
    if (!lines) throw e;
    fail(`error initializing configuration '${source}':\n${lines.map((l) => `  ${l}`).join('\n')}`);
  }
  const exit = async (code: number, drainMs = 0) => {
    await server.stop(drainMs);
    await closeDemo?.();
    process.exit(code);
  };
  server.onQuit = () => void exit(0);
  process.once('SIGINT', () => void exit(0));
  // Log rotation, as Envoy: SIGUSR1 reopens access-log files.
  process.on('SIGUSR1', () => {
    reopenAccessLogs();
    void server.afterAdminMutation('/reopen_logs');
  });
  // SIGTERM drains: listeners stop accepting, connections wind down for up to --drain-time-s.
  process.once('SIGTERM', () => void exit(0, opts.drainTimeS * 1000));
  try {
    await server.start();
  } catch (e) {
    log.critical(`failed to start: ${(e as Error).message}`);
    await exit(1);
  }
}

main(process.argv.slice(2)).catch((e) => {
  process.stderr.write(`herald: unexpected error: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
