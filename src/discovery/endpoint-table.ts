// The live endpoint table: services by authority, replaced whole by a source (file now, control plane later).
import { EventEmitter } from 'node:events'
import type { Service } from './service.ts'

export interface TableState {
  readonly source: string
  readonly version: number
  readonly updatedAt: string
  readonly services: readonly Service[]
}

/** Feeds the table. The mesh file is one; the control-plane stream is the other, behind this interface. */
export interface EndpointSource {
  readonly name: string
  start (table: EndpointTable): Promise<void>
  stop (): Promise<void>
}

export class EndpointTable extends EventEmitter<{ update: [TableState] }> {
  #byAuthority = new Map<string, Service>()
  #state: TableState = { source: 'none', version: 0, updatedAt: new Date(0).toISOString(), services: [] }

  get loaded (): boolean { return this.#state.version > 0 }
  get state (): TableState { return this.#state }

  replace (services: readonly Service[], source: string): void {
    const next = new Map<string, Service>()
    for (const s of services) for (const a of s.authorities) next.set(a, s)
    this.#byAuthority = next
    this.#state = Object.freeze({ source, version: this.#state.version + 1, updatedAt: new Date().toISOString(), services })
    this.emit('update', this.#state)
  }

  /** `web`, `web:80`, `Web.Demo.svc.cluster.local.:80` all find the same service; no port means 80. */
  resolve (authority: string): Service | undefined {
    return this.#byAuthority.get(normalizeAuthority(authority))
  }
}

export function normalizeAuthority (authority: string): string {
  let a = authority.trim().toLowerCase()
  if (!/:\d+$/.test(a) || a.endsWith(']')) a += ':80'
  return a.replace(/\.:(\d+)$/, ':$1')
}
