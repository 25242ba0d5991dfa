// Reads an Envoy v3 bootstrap (YAML or JSON, plus an optional --config-yaml
// overlay) into canonical, proto-validated JSON.
//
// Memory: a bootstrap can carry 100k endpoints. The YAML is read by js-yaml,
// which builds plain JS directly (the `yaml` package's CST and Document for a
// 10 MB file took ~1 GB), the text and the plain JS are dropped as soon as the
// walk has its canonical copy, and a single source is walked once.
import fs from 'node:fs';
import jsYaml from 'js-yaml';
import { envoyProtos } from './envoy-protos.js';
import { ConfigError, ConfigErrors } from './errors.js';
import { mergeMessage } from './merge.js';
import { type JsonObject, walkMessage } from './proto-json.js';

export const BOOTSTRAP_TYPE = 'envoy.config.bootstrap.v3.Bootstrap';

// YAML 1.2's core schema, as the `yaml` package (and so Herald before) resolves it: no `1_000`
// or `0b101` integers, which js-yaml's own core schema would take.
const NULL = new jsYaml.Type('tag:yaml.org,2002:null', {
  kind: 'scalar',
  resolve: (s: string) => /^(?:~|null|Null|NULL)?$/.test(s),
  construct: () => null,
  predicate: (v: unknown) => v === null,
});
const BOOL = new jsYaml.Type('tag:yaml.org,2002:bool', {
  kind: 'scalar',
  resolve: (s: string) => /^(?:true|True|TRUE|false|False|FALSE)$/.test(s),
  construct: (s: string) => s[0] === 't' || s[0] === 'T',
  predicate: (v: unknown) => typeof v === 'boolean',
});
const INT = new jsYaml.Type('tag:yaml.org,2002:int', {
  kind: 'scalar',
  resolve: (s: string) => /^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$/.test(s),
  construct: (s: string) => (s.startsWith('0o') ? Number.parseInt(s.slice(2), 8) : Number(s)),
  predicate: (v: unknown) => typeof v === 'number' && Number.isInteger(v),
});
const FLOAT = new jsYaml.Type('tag:yaml.org,2002:float', {
  kind: 'scalar',
  resolve: (s: string) =>
    /^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$/.test(
      s,
    ),
  construct: (s: string) => {
    const lower = s.toLowerCase();
    if (lower.endsWith('.inf')) return s.startsWith('-') ? -Infinity : Infinity;
    if (lower === '.nan') return Number.NaN;
    return Number(s);
  },
  predicate: (v: unknown) => typeof v === 'number',
});
// Local tags (`!foo`) are left as the value they tag, as before (the `yaml` package warned only).
const localTag = (kind: 'scalar' | 'sequence' | 'mapping') =>
  new jsYaml.Type('!', { kind, multi: true, construct: (data: unknown) => data });
const SCHEMA = jsYaml.FAILSAFE_SCHEMA.extend({
  implicit: [NULL, BOOL, INT, FLOAT],
  explicit: [localTag('scalar'), localTag('sequence'), localTag('mapping')],
});

/** Aliased nodes are shared; expanded by the walk, they must stay within this many nodes. */
const MAX_EXPANDED_EXTRA = 1_000_000;

/** Rejects alias cycles and alias bombs (each alias expands to a full copy in canonical JSON). */
function checkAliases(value: unknown, source: string): void {
  const sizes = new Map<object, number>();
  const open = new Set<object>();
  let unique = 0;
  const size = (v: unknown): number => {
    if (v === null || typeof v !== 'object') return 1;
    const known = sizes.get(v);
    if (known !== undefined) return known;
    if (open.has(v))
      throw new ConfigErrors([
        new ConfigError('', `${source}: invalid YAML/JSON: an alias refers to a node that contains it`),
      ]);
    open.add(v);
    unique++;
    let n = 1;
    for (const x of Array.isArray(v) ? v : Object.values(v)) n += size(x);
    open.delete(v);
    sizes.set(v, n);
    return n;
  };
  const total = size(value);
  if (total - unique > MAX_EXPANDED_EXTRA)
    throw new ConfigErrors([
      new ConfigError('', `${source}: invalid YAML/JSON: aliases expand to ${total} nodes, too many`),
    ]);
}

export function parseConfigText(text: string, source: string): unknown {
  let value: unknown;
  try {
    value = jsYaml.load(text, { schema: SCHEMA, filename: source });
  } catch (e) {
    if (!(e instanceof jsYaml.YAMLException)) throw e;
    const mark = e.mark as { line?: number; column?: number } | undefined;
    const where = mark?.line !== undefined ? `${source}:${mark.line + 1}:${(mark.column ?? 0) + 1}` : source;
    throw new ConfigErrors([new ConfigError('', `${where}: invalid YAML/JSON: ${e.reason}`)]);
  }
  // Anchors are the only way to share a node; without '&' there is none.
  if (text.includes('&')) checkAliases(value, source);
  return value ?? {};
}

export interface BootstrapSource {
  /** -c FILE */
  path?: string | undefined;
  /** --config-yaml STRING, merged over the file */
  configYaml?: string | undefined;
}

/** Reads and parses -c FILE; the text is dropped on return. */
function readConfigFile(path: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigErrors([new ConfigError('', `cannot read ${path}: ${(e as Error).message}`)]);
  }
  if (/\.(pb|pb_text)$/.test(path))
    throw new ConfigErrors([
      new ConfigError('', `${path}: binary and text-proto bootstraps are not supported; use YAML or JSON`),
    ]);
  return parseConfigText(text, path);
}

function checkNotXds(value: unknown, source: string): void {
  if (value && typeof value === 'object' && 'resources' in value && !('static_resources' in value))
    throw new ConfigErrors([
      new ConfigError(
        'resources',
        `${source} is an xDS DiscoveryResponse file, not a bootstrap; point a bootstrap's dynamic_resources at it with path_config_source`,
      ),
    ]);
}

/** Loads and validates a bootstrap; throws ConfigErrors listing every problem found. */
export function loadBootstrap(src: BootstrapSource): JsonObject {
  const protos = envoyProtos();
  const type = protos.lookupType(BOOTSTRAP_TYPE)!;
  // Each source's plain JS is dropped (set to undefined) once walked.
  const sources: Array<{ value: unknown; source: string }> = [];
  if (src.path !== undefined) sources.push({ value: readConfigFile(src.path), source: src.path });
  if (src.configYaml !== undefined)
    sources.push({ value: parseConfigText(src.configYaml, '--config-yaml'), source: '--config-yaml' });
  if (sources.length === 0)
    throw new ConfigErrors([new ConfigError('', 'no configuration given (-c FILE or --config-yaml)')]);

  if (sources.length === 1) {
    checkNotXds(sources[0]!.value, sources[0]!.source);
    // One source: one walk, required fields included. A valid bootstrap gives what the two
    // passes below give (canonical JSON is a fixed point); an invalid one is walked again by
    // them, so that the errors reported are theirs.
    const once = walkMessage(protos, BOOTSTRAP_TYPE, sources[0]!.value, { checkRequired: true });
    if (once.errors.length === 0) {
      sources[0]!.value = undefined;
      return once.value ?? {};
    }
  }
  const parts: JsonObject[] = [];
  for (const s of sources) {
    checkNotXds(s.value, s.source);
    const { value: canonical, errors } = walkMessage(protos, BOOTSTRAP_TYPE, s.value, {
      checkRequired: false,
    });
    s.value = undefined;
    if (errors.length)
      throw new ConfigErrors(
        sources.length > 1
          ? errors.map((e) => new ConfigError(e.path, `${e.detail} (in ${s.source})`))
          : errors,
      );
    parts.push(canonical ?? {});
  }
  const merged = parts.reduce((acc, p) => mergeMessage(protos, type, acc, p));
  parts.length = 0;
  // Second pass over the merged whole: required fields are checked only now.
  const { value, errors } = walkMessage(protos, BOOTSTRAP_TYPE, merged, { checkRequired: true });
  if (errors.length) throw new ConfigErrors(errors);
  return value ?? {};
}
