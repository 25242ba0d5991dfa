// A snapshot cache in the spirit of go-control-plane's: for each node id, one
// immutable snapshot holding every resource the node may see, with a version
// per resource type. Streams watch the cache and push what changed.
import { type EncodedResource, encodeResource, RESOURCE_TYPES } from '../resources.js';

export interface SnapshotInput {
  /** One version for every type, or a version per type URL. */
  version: string | Record<string, string>;
  /** Resources by type URL, as proto3 JSON (`@type` optional) or already encoded. */
  resources: Record<string, ReadonlyArray<unknown>>;
}

/** An immutable set of encoded resources, by type URL and name. */
export class Snapshot {
  private readonly versions = new Map<string, string>();
  private readonly byType = new Map<string, ReadonlyMap<string, EncodedResource>>();

  constructor(input: SnapshotInput) {
    const types = new Set<string>(Object.keys(input.resources));
    if (typeof input.version === 'string') for (const t of RESOURCE_TYPES.keys()) types.add(t);
    else for (const t of Object.keys(input.version)) types.add(t);
    for (const typeUrl of types) {
      if (!RESOURCE_TYPES.has(typeUrl)) throw new Error(`unsupported xDS resource type ${typeUrl}`);
      const version = typeof input.version === 'string' ? input.version : input.version[typeUrl];
      if (version === undefined) throw new Error(`no version for ${typeUrl}`);
      const map = new Map<string, EncodedResource>();
      (input.resources[typeUrl] ?? []).forEach((r, i) => {
        let enc: EncodedResource;
        try {
          enc = isEncoded(r) ? r : encodeResource(typeUrl, r);
        } catch (e) {
          throw new Error(`${typeUrl} resource [${i}]: ${(e as Error).message}`);
        }
        if (map.has(enc.name)) throw new Error(`${typeUrl}: two resources named '${enc.name}'`);
        map.set(enc.name, enc);
      });
      this.versions.set(typeUrl, version);
      this.byType.set(typeUrl, map);
    }
  }

  /** Whether the snapshot speaks for this type at all (a type it omits gets no response). */
  has(typeUrl: string): boolean {
    return this.versions.has(typeUrl);
  }

  version(typeUrl: string): string | undefined {
    return this.versions.get(typeUrl);
  }

  resources(typeUrl: string): ReadonlyMap<string, EncodedResource> {
    return this.byType.get(typeUrl) ?? new Map();
  }
}

function isEncoded(r: unknown): r is EncodedResource {
  if (typeof r !== 'object' || r === null) return false;
  const o = r as Record<string, unknown>;
  return typeof o.name === 'string' && typeof o.version === 'string' && typeof o.any === 'object';
}

export type SnapshotWatch = (snapshot: Snapshot) => void;

export class SnapshotCache {
  private readonly snapshots = new Map<string, Snapshot>();
  private readonly watches = new Map<string, Set<SnapshotWatch>>();

  /**
   * Replaces the node's snapshot and notifies the node's open streams. The
   * whole input is encoded and validated first: an invalid resource throws and
   * leaves the previous snapshot in place.
   */
  setSnapshot(nodeId: string, input: SnapshotInput | Snapshot): Snapshot {
    const snap = input instanceof Snapshot ? input : new Snapshot(input);
    this.snapshots.set(nodeId, snap);
    for (const w of [...(this.watches.get(nodeId) ?? [])]) w(snap);
    return snap;
  }

  getSnapshot(nodeId: string): Snapshot | undefined {
    return this.snapshots.get(nodeId);
  }

  /** Forgets a node's snapshot; open streams keep what they were sent. */
  clearSnapshot(nodeId: string): void {
    this.snapshots.delete(nodeId);
  }

  /** Calls `watch` on every new snapshot for the node; returns the cancel function. */
  watch(nodeId: string, watch: SnapshotWatch): () => void {
    let set = this.watches.get(nodeId);
    if (!set) this.watches.set(nodeId, (set = new Set()));
    set.add(watch);
    return () => {
      set.delete(watch);
      if (set.size === 0 && this.watches.get(nodeId) === set) this.watches.delete(nodeId);
    };
  }

  /** Node ids with at least one open stream. */
  watchedNodes(): string[] {
    return [...this.watches.keys()];
  }
}
