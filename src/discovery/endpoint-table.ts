// The live endpoint table: services by authority, fed whole by the mesh file or per service by the control plane.
import { EventEmitter } from 'node:events'
import { podAuthorities, type Service } from '../mesh/service.ts'

export interface TableState {
  /** Where the table comes from: `file:<path>` or `control:<host:port>`. */
  readonly source: string
  /** Increments on every change of this table. */
  readonly version: number
  readonly updatedAt: string
  readonly services: readonly Service[]
  /** With the control plane: each service's revision there, by `name.namespace:port`. */
  readonly revisions?: Readonly<Record<string, number>>
}

/** Authority → service: the table itself (mesh file), or the discovery client, which may have to ask first. */
export interface Resolver {
  resolve (authority: string): Service | undefined | Promise<Service | undefined>
}


export class EndpointTable extends EventEmitter<{ update: [TableState] }> {
  #byKey = new Map<string, Service>()
  #byAuthority = new Map<string, Service>()
  #revisions = new Map<string, number>()
  #state: TableState = { source: 'none', version: 0, updatedAt: new Date(0).toISOString(), services: [] }

  get loaded (): boolean { return this.#state.version > 0 }
  get state (): TableState { return this.#state }

  /** The whole table at once (the mesh file). */
  replace (services: readonly Service[], source: string): void {
    this.#byKey = new Map(services.map((s) => [s.key, s]))
    this.#revisions.clear()
    this.#reindex(source)
  }

  /** One service added or changed (the control plane), with its revision there. */
  upsert (service: Service, source: string, revision: number): void {
    this.#byKey.set(service.key, service)
    this.#revisions.set(service.key, revision)
    this.#reindex(source)
  }

  remove (key: string, source: string): void {
    if (!this.#byKey.delete(key)) return
    this.#revisions.delete(key)
    this.#reindex(source)
  }

  /** The first sync of a source that has no services to report still makes the table "loaded". */
  touch (source: string): void {
    if (!this.loaded) this.#reindex(source)
  }

  /** `web`, `web:80`, `Web.Demo.svc.cluster.local.:80`, its cluster IP:80 and a pod's IP:port all find the same service; no port means 80. */
  resolve (authority: string): Service | undefined {
    return this.#byAuthority.get(normalizeAuthority(authority))
  }

  #reindex (source: string): void {
    const next = new Map<string, Service>()
    // A pod's own IP:port finds its service too (a redirected connection to that pod); names win.
    for (const s of this.#byKey.values()) for (const a of podAuthorities(s)) next.set(a, s)
    for (const s of this.#byKey.values()) for (const a of s.authorities) next.set(a, s)
    this.#byAuthority = next
    this.#state = Object.freeze({
      source,
      version: this.#state.version + 1,
      updatedAt: new Date().toISOString(),
      services: [...this.#byKey.values()],
      revisions: this.#revisions.size > 0 ? Object.fromEntries(this.#revisions) : undefined,
    })
    this.emit('update', this.#state)
  }
}

export function normalizeAuthority (authority: string): string {
  // An empty port is the scheme's default (RFC 9110 §4.2.3): `web:` is `web:80`.
  let a = authority.trim().toLowerCase().replace(/:$/, '')
  if (!/:\d+$/.test(a) || a.endsWith(']')) a += ':80'
  return a.replace(/\.:(\d+)$/, ':$1')
}
