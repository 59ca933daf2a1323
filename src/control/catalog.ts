// The control plane's catalog: every service its source knows, each with the revision of its last change.
import { EventEmitter } from 'node:events'
import { isDeepStrictEqual } from 'node:util'
import { normalizeAuthority } from '../discovery/endpoint-table.ts'
import { lookupAuthorities, type Service } from '../mesh/service.ts'

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
  #byAuthority = new Map<string, string>()
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
    if (old !== undefined) for (const a of lookupAuthorities(old.service)) if (this.#byAuthority.get(a) === key) this.#byAuthority.delete(a)
    const entry: CatalogEntry = Object.freeze({ key, service, version: ++this.#revision })
    this.#byKey.set(key, entry)
    for (const a of lookupAuthorities(service)) this.#byAuthority.set(a, key)
    this.emit('change', key, entry, old)
  }

  delete (key: string): void {
    const old = this.#byKey.get(key)
    if (old === undefined) return
    this.#byKey.delete(key)
    for (const a of lookupAuthorities(old.service)) if (this.#byAuthority.get(a) === key) this.#byAuthority.delete(a)
    this.#revision++
    this.emit('change', key, undefined, old)
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
    const key = this.#byAuthority.get(normalizeAuthority(authority))
    return key === undefined ? undefined : this.#byKey.get(key)
  }
}
