// The discovery API's messages (docs/discovery-api.md): one JSON object per line on a watch stream.
import type { Endpoint, Service } from '../mesh/service.ts'

export const WATCH_PATH = '/v1/watch'
export const WIRE_CONTENT_TYPE = 'application/x-ndjson'

/** The whole service: sent first, and again whenever more than its endpoints changed. */
export interface SnapshotMessage { readonly type: 'snapshot', readonly version: number, readonly service: Service }
/** Only endpoints changed since `previous`: apply in order; a gap means resubscribe. */
export interface DeltaMessage {
  readonly type: 'delta'
  readonly version: number
  readonly previous: number
  readonly add: readonly Endpoint[]
  readonly update: readonly Endpoint[]
  /** Endpoint keys. */
  readonly remove: readonly string[]
}
/** No service has this authority (yet, or any more). The watch stays open; a snapshot follows if it appears. */
export interface AbsentMessage { readonly type: 'absent', readonly version: number, readonly authority: string }
export type WatchMessage = SnapshotMessage | DeltaMessage | AbsentMessage

export const encode = (m: WatchMessage): Buffer => Buffer.from(JSON.stringify(m) + '\n')

/** What changed from `before` to `after`: a delta when only endpoints did, else a snapshot. */
export function diff (before: Service, beforeVersion: number, after: Service, afterVersion: number): WatchMessage {
  const { endpoints: be, ...bRest } = before
  const { endpoints: ae, ...aRest } = after
  if (JSON.stringify(bRest) !== JSON.stringify(aRest)) return { type: 'snapshot', version: afterVersion, service: after }
  const old = new Map(be.map((e) => [e.key, e]))
  const add: Endpoint[] = []
  const update: Endpoint[] = []
  for (const e of ae) {
    const o = old.get(e.key)
    old.delete(e.key)
    if (o === undefined) add.push(e)
    else if (o.weight !== e.weight || o.identity !== e.identity) update.push(e)
  }
  return { type: 'delta', version: afterVersion, previous: beforeVersion, add, update, remove: [...old.keys()] }
}

/** A delta applied to the service it follows; endpoint order: kept ones first, then the added. */
export function applyDelta (service: Service, d: DeltaMessage): Service {
  const gone = new Set(d.remove)
  const changed = new Map(d.update.map((e) => [e.key, e]))
  const endpoints = service.endpoints.filter((e) => !gone.has(e.key)).map((e) => changed.get(e.key) ?? e)
  return { ...service, endpoints: [...endpoints, ...d.add] }
}

/** Checks a received line is a message this client understands; throws saying which field is wrong. */
export function decode (line: string): WatchMessage {
  const m = JSON.parse(line) as Partial<Record<string, unknown>>
  const need = (ok: boolean, what: string): void => { if (!ok) throw new Error(`discovery message ${what}: ${line.slice(0, 200)}`) }
  need(typeof m === 'object' && m !== null, 'is not an object')
  need(Number.isInteger(m.version), 'has no integer "version"')
  switch (m.type) {
    case 'snapshot': {
      const s = m.service as Partial<Service> | undefined
      need(typeof s === 'object' && s !== null, 'has no "service"')
      need(typeof s?.name === 'string' && typeof s.key === 'string' && Array.isArray(s.authorities) && Array.isArray(s.endpoints) && typeof s.policy === 'object', 'has a service without name, key, authorities, endpoints or policy')
      for (const e of s?.endpoints ?? []) checkEndpoint(e, need)
      break
    }
    case 'delta':
      need(Number.isInteger(m.previous) && Array.isArray(m.add) && Array.isArray(m.update) && Array.isArray(m.remove), 'is a delta without previous, add, update or remove')
      for (const e of [...(m.add as Endpoint[]), ...(m.update as Endpoint[])]) checkEndpoint(e, need)
      break
    case 'absent':
      need(typeof m.authority === 'string', 'is "absent" without an authority')
      break
    default:
      need(false, `has unknown type ${JSON.stringify(m.type)}`)
  }
  return m as unknown as WatchMessage
}

function checkEndpoint (e: Partial<Endpoint>, need: (ok: boolean, what: string) => void): void {
  need(typeof e?.key === 'string' && typeof e.address?.host === 'string' && Number.isInteger(e.address.port) &&
    Number.isInteger(e.targetPort) && typeof e.weight === 'number' && typeof e.identity === 'string', 'has an endpoint without key, address, targetPort, weight or identity')
}
