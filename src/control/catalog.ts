// The control plane's catalog: every service its source knows, each with the revision of its last change.
import { EventEmitter } from 'node:events'
import { isDeepStrictEqual } from 'node:util'
import { normalizeAuthority } from '../discovery/endpoint-table.ts'
import { podAuthorities, type Service } from '../mesh/service.ts'

export interface CatalogEntry {
  /** The service's key, `name.namespace:port`. */
  readonly key: string
  readonly service: Service
  /** The catalog revision at which this service last changed. */
  readonly version: number
}

/** Feeds the catalog: the mesh file, or Kubernetes Services and EndpointSlices. */
export interface CatalogSource {
  readonly name: string
  /** Resolves once the first full view is in the catalog (then `catalog.markSynced()` has been called). */
  start (catalog: Catalog): Promise<void>
  stop (): Promise<void>
}

export interface CatalogEvents {
  /** A service appeared or changed (`entry` set) or went away (`entry` undefined); `previous` is what it was. */
  change: [key: string, entry: CatalogEntry | undefined, previous: CatalogEntry | undefined]
  synced: []
}

export class Catalog extends EventEmitter<CatalogEvents> {
  #byKey = new Map<string, CatalogEntry>()
  /** A service's own authorities (names, cluster IPs) → its key. */
  #byAuthority = new Map<string, string>()
  /** A pod's ip:port → the keys of every service that has it (a pod may back several). */
  #byPod = new Map<string, Set<string>>()
  #revision = 0
  #synced = false
  source = 'none'

  constructor () {
    super()
    // One listener per discovery watch on a popular service is normal; counted in metrics instead.
    this.setMaxListeners(0)
  }

  get revision (): number { return this.#revision }
  get synced (): boolean { return this.#synced }
  get size (): number { return this.#byKey.size }
  entries (): IterableIterator<CatalogEntry> { return this.#byKey.values() }

  /** Adds or replaces one service. An identical copy changes nothing (no revision, no event). */
  set (service: Service): void {
    const key = service.key
    const old = this.#byKey.get(key)
    if (old !== undefined && isDeepStrictEqual(old.service, service)) return
    if (old !== undefined) this.#unindex(key, old.service)
    const entry: CatalogEntry = Object.freeze({ key, service, version: ++this.#revision })
    this.#byKey.set(key, entry)
    for (const a of service.authorities) this.#byAuthority.set(a, key)
    for (const a of podAuthorities(service)) {
      const keys = this.#byPod.get(a) ?? new Set<string>()
      keys.add(key)
      this.#byPod.set(a, keys)
    }
    this.emit('change', key, entry, old)
  }

  delete (key: string): void {
    const old = this.#byKey.get(key)
    if (old === undefined) return
    this.#byKey.delete(key)
    this.#unindex(key, old.service)
    this.#revision++
    this.emit('change', key, undefined, old)
  }

  #unindex (key: string, service: Service): void {
    for (const a of service.authorities) if (this.#byAuthority.get(a) === key) this.#byAuthority.delete(a)
    for (const a of podAuthorities(service)) {
      const keys = this.#byPod.get(a)
      keys?.delete(key)
      if (keys?.size === 0) this.#byPod.delete(a)
    }
  }

  /** Makes the catalog hold exactly `services`: sets the new and changed, deletes the rest. */
  replace (services: readonly Service[], source: string): void {
    this.source = source
    const keep = new Set(services.map((s) => s.key))
    for (const key of [...this.#byKey.keys()]) if (!keep.has(key)) this.delete(key)
    for (const s of services) this.set(s)
  }

  /** The source has delivered its first full view; watches wait for this before answering. */
  markSynced (): void {
    if (this.#synced) return
    this.#synced = true
    this.emit('synced')
  }

  /** Any of a service's authorities (`web`, `web.demo:80`, FQDN with port, cluster IP:port) or a pod's IP:port → its entry. */
  lookup (authority: string): CatalogEntry | undefined {
    const a = normalizeAuthority(authority)
    // Names win over pod addresses; a pod behind several services finds the first.
    const key = this.#byAuthority.get(a) ?? this.#byPod.get(a)?.values().next().value
    return key === undefined ? undefined : this.#byKey.get(key)
  }
}
