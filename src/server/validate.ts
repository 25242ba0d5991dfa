// --mode validate: load, validate and compile a bootstrap in this process,
// opening no socket. (Serving loads protos in a short-lived child process instead; see
// Server.create.)
import { loadBootstrap } from '../config/bootstrap-loader.js';
import { registerBuiltinExtensions } from '../extensions/builtin.js';
import { type BootstrapConfig, compileBootstrap } from './bootstrap-config.js';
import type { ServerOptions } from './server.js';
import { ServerContext } from './server-context.js';

export function validateConfig(opts: ServerOptions): BootstrapConfig {
  registerBuiltinExtensions();
  const canonical = loadBootstrap({ path: opts.configPath, configYaml: opts.configYaml });
  return compileBootstrap(canonical, new ServerContext(), opts);
}
