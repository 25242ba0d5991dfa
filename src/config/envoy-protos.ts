// Envoy's v3 API, read from the .proto files that @grpc/grpc-js-xds ships
// (deps/envoy-api, googleapis, xds, protoc-gen-validate). Nothing is retyped:
// message shapes, field names, enums and validate.rules come from the protos.
//
// Files are loaded lazily, per proto package, when a type is first needed: a
// type's package maps one-to-one onto its folder (envoy.config.route.v3 ->
// envoy/config/route/v3/), so a type URL tells us which folder to load.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import protobuf from 'protobufjs';

const require = createRequire(import.meta.url);

function depsDir(): string {
  const pkg = require.resolve('@grpc/grpc-js-xds/package.json');
  return path.join(path.dirname(pkg), 'deps');
}

function protobufjsDir(): string {
  return path.dirname(require.resolve('protobufjs/package.json'));
}

export const TYPE_URL_PREFIX = 'type.googleapis.com/';

export function typeNameOfUrl(typeUrl: string): string {
  const slash = typeUrl.lastIndexOf('/');
  return slash >= 0 ? typeUrl.slice(slash + 1) : typeUrl;
}

export class EnvoyProtos {
  readonly root: protobuf.Root;
  private readonly searchRoots: string[];
  private readonly loadedDirs = new Set<string>();
  private readonly loadedFiles = new Set<string>();

  constructor() {
    const deps = depsDir();
    this.searchRoots = ['envoy-api', 'googleapis', 'xds', 'protoc-gen-validate'].map((d) =>
      path.join(deps, d),
    );
    this.searchRoots.push(protobufjsDir());
    this.root = new protobuf.Root();
    this.root.resolvePath = (_origin: string, target: string): string | null => {
      // google/protobuf/{any,duration,struct,...}.proto are built into protobufjs.
      if ((protobuf.common as unknown as Record<string, unknown>)[target]) return target;
      for (const r of this.searchRoots) {
        const p = path.join(r, target);
        if (fs.existsSync(p)) return p;
      }
      return null;
    };
  }

  private loadFile(rel: string): void {
    if (this.loadedFiles.has(rel)) return;
    this.loadedFiles.add(rel);
    try {
      this.root.loadSync(rel, { keepCase: true });
    } catch {
      // A few shipped files import protos that are not shipped (OpenTelemetry,
      // OpenCensus); the types in them are simply unavailable.
    }
  }

  /** Loads every .proto in the folder of a proto package. Returns false if none exists. */
  private loadPackage(pkg: string): boolean {
    const rel = pkg.split('.').join('/');
    if (this.loadedDirs.has(rel)) return true;
    for (const r of this.searchRoots) {
      const dir = path.join(r, rel);
      let entries: string[];
      try {
        entries = fs.readdirSync(dir).filter((f) => f.endsWith('.proto'));
      } catch {
        continue;
      }
      this.loadedDirs.add(rel);
      for (const f of entries) this.loadFile(`${rel}/${f}`);
      return true;
    }
    return false;
  }

  /** Finds a message type by its full name (`envoy.config.route.v3.Route`), loading its package. */
  lookupType(fullName: string): protobuf.Type | undefined {
    const found = this.tryLookup(fullName);
    if (found) return found;
    // The package is the longest dotted prefix that names a folder; nested
    // messages (Foo.Bar) make the last segments type names.
    const parts = fullName.split('.');
    for (let i = parts.length - 1; i > 0; i--) {
      if (this.loadPackage(parts.slice(0, i).join('.'))) {
        const t = this.tryLookup(fullName);
        if (t) return t;
      }
    }
    return undefined;
  }

  lookupTypeUrl(typeUrl: string): protobuf.Type | undefined {
    return this.lookupType(typeNameOfUrl(typeUrl));
  }

  private tryLookup(fullName: string): protobuf.Type | undefined {
    try {
      const t = this.root.lookup(fullName);
      return t instanceof protobuf.Type ? t : undefined;
    } catch {
      return undefined;
    }
  }

  /** Resolves a field's type (message or enum) in the context of its parent. */
  resolveField(field: protobuf.Field): protobuf.Field {
    if (!field.resolved) {
      // Make sure the referenced type's package is loaded before resolving.
      const t = field.type.startsWith('.') ? field.type.slice(1) : undefined;
      if (t) this.lookupType(t);
      field.resolve();
    }
    return field;
  }
}

let shared: EnvoyProtos | undefined;
/** One loader per process; protos are immutable once loaded. */
export function envoyProtos(): EnvoyProtos {
  shared ??= new EnvoyProtos();
  return shared;
}
