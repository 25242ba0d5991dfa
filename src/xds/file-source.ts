// path_config_source: resources from a file holding a DiscoveryResponse
// (`version_info`, `resources: [...]`, YAML or JSON). As in Envoy, the file is
// read at start and again whenever it is moved into place (written elsewhere,
// then renamed over it, as `mv` and `sed -i` do), so a half-written file is
// never read.
import fs from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { logger } from '../common/logger.js';
import type { JsonObject } from '../config/proto-json.js';
import type { ResourceUpdate, XdsUpdate } from './client/xds-client.js';
import { typeInfo } from './resources.js';

const log = logger('config');

export class FileSource {
  private watcher: fs.FSWatcher | undefined;
  /** Resources in force, by name, as JSON text (to tell changed ones from unchanged). */
  private current = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly file: string,
    readonly typeUrl: string,
    /** Returns an error message to reject the file's content (the last good one stays). */
    private readonly onUpdate: (typeUrl: string, u: XdsUpdate) => string | undefined,
  ) {}

  start(): void {
    this.read();
    const dir = path.dirname(this.file);
    const base = path.basename(this.file);
    try {
      this.watcher = fs.watch(dir, (event, name) => {
        // A rename into place ('rename'); editors that write in place are not followed (Envoy's rule).
        if (event === 'rename' && name === base) {
          clearTimeout(this.timer);
          this.timer = setTimeout(() => this.read(), 10);
        }
      });
      this.watcher.unref();
    } catch (e) {
      log.error(`cannot watch ${dir}: ${(e as Error).message}`);
    }
  }

  private read(): void {
    if (!fs.existsSync(this.file)) return;
    let doc: unknown;
    try {
      doc = parse(fs.readFileSync(this.file, 'utf8'));
    } catch (e) {
      log.error(`${this.file}: ${(e as Error).message}; keeping the previous config`);
      return;
    }
    const info = typeInfo(this.typeUrl);
    const resources = (doc as { resources?: unknown })?.resources;
    if (!Array.isArray(resources)) {
      log.error(`${this.file}: expected a DiscoveryResponse with 'resources'; keeping the previous config`);
      return;
    }
    const versionInfo = String((doc as { version_info?: unknown }).version_info ?? '');
    const next = new Map<string, ResourceUpdate>();
    const texts = new Map<string, string>();
    for (const r of resources as JsonObject[]) {
      const name = r?.[info?.nameField ?? 'name'];
      if (typeof name !== 'string' || r['@type'] !== this.typeUrl) {
        log.error(
          `${this.file}: each resource needs "@type: ${this.typeUrl}" and a name; keeping the previous config`,
        );
        return;
      }
      next.set(name, { version: versionInfo, resource: r });
      texts.set(name, JSON.stringify(r));
    }
    const update: XdsUpdate = { added: new Map(), updated: new Map(), removed: [], versionInfo, state: next };
    for (const [name, r] of next) {
      const old = this.current.get(name);
      if (old === undefined) update.added.set(name, r);
      else if (old !== texts.get(name)) update.updated.set(name, r);
    }
    for (const name of this.current.keys()) if (!next.has(name)) update.removed.push(name);
    const err = this.onUpdate(this.typeUrl, update);
    if (err) {
      log.error(`${this.file}: rejected: ${err}; keeping the previous config`);
      return;
    }
    this.current = texts;
  }

  close(): void {
    clearTimeout(this.timer);
    this.watcher?.close();
  }
}
