// TLS secrets by name (SDS): certificates and validation contexts that arrive
// from a control plane (or `static_resources.secrets`) and can change while
// Herald runs. A TLS context that names a secret rebuilds itself on each new
// version, so new connections use it (certificate rotation) while open ones
// keep theirs.
import type { JsonObject } from '../config/proto-json.js';
import type { Reader } from '../config/reader.js';
import type { ConfigSourceConfig } from '../router/rds.js';
import { readDataSource } from '../router/route-config.js';

export interface TlsSecret {
  certificate?: { chain: Buffer; key: Buffer; password?: string };
  validation?: { trustedCa?: Buffer };
}

/** extensions.transport_sockets.tls.v3.Secret (tls_certificate or validation_context). */
export function compileSecret(r: Reader): TlsSecret {
  r.str('name');
  const kind = r.oneof('tls_certificate', 'validation_context', 'session_ticket_keys', 'generic_secret');
  if (kind === 'tls_certificate') {
    const c = r.msg('tls_certificate')!;
    const chain = c.msg('certificate_chain');
    const key = c.msg('private_key');
    if (!chain || !key)
      throw c.error(chain ? 'private_key' : 'certificate_chain', 'required field is missing');
    const pw = c.msg('password');
    return {
      certificate: {
        chain: readDataSource(chain),
        key: readDataSource(key),
        ...(pw ? { password: readDataSource(pw).toString() } : {}),
      },
    };
  }
  if (kind === 'validation_context') {
    const v = r.msg('validation_context')!;
    const ca = v.msg('trusted_ca');
    return { validation: ca ? { trustedCa: readDataSource(ca) } : {} };
  }
  throw r.error(
    kind,
    kind ? `secret type '${kind}' is not supported` : 'a secret needs tls_certificate or validation_context',
  );
}

type Listener = () => void;

class SecretEntry {
  secret: TlsSecret | undefined;
  version = '';
  lastUpdated = 0;
  resource: JsonObject | undefined;
  readonly listeners = new Set<Listener>();
  constructor(readonly source: ConfigSourceConfig | undefined) {}
}

export class SecretRegistry {
  private readonly entries = new Map<string, SecretEntry>();
  /** Told of a name the first time a TLS context asks for it with an SDS source (to subscribe). */
  onNewName: ((name: string, source: ConfigSourceConfig) => void) | undefined;

  /** Watches a secret: `changed` runs now if it is there, and on every new version. */
  watch(name: string, source: ConfigSourceConfig | undefined, changed: Listener): void {
    let e = this.entries.get(name);
    if (!e) {
      this.entries.set(name, (e = new SecretEntry(source)));
      if (source) this.onNewName?.(name, source);
    }
    e.listeners.add(changed);
  }

  get(name: string): TlsSecret | undefined {
    return this.entries.get(name)?.secret;
  }

  update(name: string, secret: TlsSecret, resource?: JsonObject, version = ''): void {
    let e = this.entries.get(name);
    if (!e) this.entries.set(name, (e = new SecretEntry(undefined)));
    e.secret = secret;
    e.resource = resource;
    e.version = version;
    e.lastUpdated = Date.now();
    for (const l of e.listeners) l();
  }

  names(): Array<[string, ConfigSourceConfig | undefined]> {
    return [...this.entries].map(([n, e]) => [n, e.source]);
  }
}
