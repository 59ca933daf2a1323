// Kubernetes Service + EndpointSlices + Pods → remora Services (one per Service port); pure, never throws.
import { isIPv4, isIPv6 } from 'node:net'
import type { V1EndpointSlice, V1Pod, V1Service } from '@kubernetes/client-node'
import { deepFreeze } from '../config/deep-freeze.ts'
import { authoritiesOf, serviceKeyOf, type AppProtocol, type Endpoint, type Service } from '../mesh/service.ts'
import { spiffeId } from '../mesh/spiffe-id.ts'
import { annotationsWithoutEffect, policyFromAnnotations, ANNOTATIONS_WITHOUT_EFFECT, type AnnotationWarning } from '../resilience/annotations.ts'
import { servicePolicy } from '../resilience/policy-file.ts'
import { parsePortList, portsOf } from '../parse/port-list.ts'
import { DEFAULT_SERVICE_POLICY } from '../resilience/policy.ts'
import type { ServicePolicy } from '../mesh/policy.ts'

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name'
export const PROTOCOL_ANNOTATION = 'remora.dev/protocol'
export const DEFAULT_INBOUND_PORT = 15006
export const OPAQUE_PORTS_ANNOTATION = 'remora.dev/opaque-ports'
const PROTOCOLS: readonly AppProtocol[] = ['auto', 'http1', 'http2', 'grpc', 'opaque']
/** Service port `appProtocol` values remora understands; anything else is reported and treated as auto. */
const APP_PROTOCOLS: Readonly<Record<string, AppProtocol>> = {
  http: 'http1', 'kubernetes.io/ws': 'http1', http2: 'http2', h2c: 'http2', 'kubernetes.io/h2c': 'http2', grpc: 'grpc',
  // Not HTTP: carried as opaque TCP, never detected (server-first protocols must not wait).
  tcp: 'opaque', tls: 'opaque', https: 'opaque', mysql: 'opaque', postgresql: 'opaque', postgres: 'opaque', redis: 'opaque',
  mongo: 'opaque', mongodb: 'opaque', kafka: 'opaque', amqp: 'opaque', nats: 'opaque', smtp: 'opaque',
}

export interface KubeConversionOptions {
  readonly trustDomain: string
  /** The sidecar inbound port every endpoint is reached on (default 15006). */
  readonly inboundPort?: number
}

/** A pod by namespace and name, as the pod informer holds it (only spec.serviceAccountName is read). */
export type PodLookup = (namespace: string, name: string) => V1Pod | undefined

export interface KubeConversion {
  readonly services: readonly Service[]
  /** One line per malformed part that was left out: object, field path, what was expected. */
  readonly problems: readonly string[]
  /** Recognised annotations that do nothing in this version yet: not problems, but worth a warning. */
  readonly warnings: readonly AnnotationWarning[]
  /** Pods (`ns/name`) that slices reference but the pod lookup does not know yet: their endpoints wait. */
  readonly waitingFor: readonly string[]
}

type Family = 'IPv4' | 'IPv6'
interface EndpointView { address: string, ready: boolean, drain: boolean, identity: string, pod: string }
interface SliceView { family: Family, ports: Map<string, number>, endpoints: EndpointView[] }
interface Candidate { ep: EndpointView, family: Family, targetPort: number }
type Obj = Record<string, unknown>

const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v)
const isName = (v: unknown): v is string => typeof v === 'string' && v !== ''
const isPort = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 65535
const optBool = (v: unknown): boolean => v === undefined || v === null || typeof v === 'boolean'
const show = (v: unknown): string => {
  if (v === undefined) return 'nothing'
  const s = JSON.stringify(v) ?? String(v)
  return s.length > 60 ? `${s.slice(0, 57)}...` : s
}

/** `namespace/name` of any object, or undefined when its metadata is unusable. */
export function objectKey (obj: unknown): string | undefined {
  const m = isObj(obj) ? obj.metadata : undefined
  if (!isObj(m) || !isName(m.name)) return undefined
  return `${isName(m.namespace) ? m.namespace : ''}/${m.name}`
}

/** `namespace/service` a slice belongs to (its kubernetes.io/service-name label). */
export function sliceServiceKey (slice: unknown): string | undefined {
  const m = isObj(slice) ? slice.metadata : undefined
  const label = isObj(m) && isObj(m.labels) ? m.labels[SERVICE_NAME_LABEL] : undefined
  return isObj(m) && isName(m.namespace) && isName(label) ? `${m.namespace}/${label}` : undefined
}

/** Pods (`ns/name`) a slice's endpoints point at through targetRef. */
export function slicePodKeys (slice: unknown): string[] {
  const s = isObj(slice) ? slice : {}
  const ns = isObj(s.metadata) && isName(s.metadata.namespace) ? s.metadata.namespace : ''
  if (!Array.isArray(s.endpoints)) return []
  const keys: string[] = []
  for (const e of s.endpoints as unknown[]) {
    const ref = isObj(e) ? e.targetRef : undefined
    if (isObj(ref) && ref.kind === 'Pod' && isName(ref.name)) keys.push(`${isName(ref.namespace) ? ref.namespace : ns}/${ref.name}`)
  }
  return keys
}

/**
 * The pod's annotations the control plane reads: only those that have no effect yet (to warn about
 * them). Everything else (default-policy, allow) is for the pod's own sidecar, through the downward API.
 */
export function podAnnotationsRead (pod: unknown): Record<string, string> | undefined {
  const m = isObj(pod) ? pod.metadata : undefined
  const a = isObj(m) ? m.annotations : undefined
  if (!isObj(a)) return undefined
  const out: Record<string, string> = {}
  for (const k of Object.keys(ANNOTATIONS_WITHOUT_EFFECT)) if (typeof a[k] === 'string') out[k] = a[k]
  return Object.keys(out).length > 0 ? out : undefined
}

/** Warnings for a pod's annotations that have no effect yet (see podAnnotationsRead). */
export function podAnnotationWarnings (pod: unknown): AnnotationWarning[] {
  const annotations = podAnnotationsRead(pod)
  return annotations === undefined ? [] : annotationsWithoutEffect(annotations, `Pod ${objectKey(pod) ?? '(unnamed)'}`)
}

/**
 * The remora Services for one Kubernetes Service: one per TCP port (authority name:port), endpoints
 * from its EndpointSlices (others are ignored), identities from the pods. Malformed parts are
 * reported in `problems` and left out; the rest is kept. The result is frozen.
 */
export function servicesFromKube (service: V1Service, slices: Iterable<V1EndpointSlice>, pods: PodLookup, options: KubeConversionOptions): KubeConversion {
  const problems: string[] = []
  const warnings: AnnotationWarning[] = []
  const waitingFor = new Set<string>()
  let services: Service[]
  try {
    services = convert(service as unknown, slices as Iterable<unknown>, pods, options, problems, warnings, waitingFor)
  } catch (err) {
    // Safety net only (e.g. a pod lookup that throws): shape problems are reported field by field in convert.
    problems.push(`Service ${objectKey(service) ?? '(unnamed)'}: not converted: ${err instanceof Error ? err.message : String(err)}`)
    services = []
  }
  return deepFreeze({ services, problems, warnings, waitingFor: [...waitingFor] })
}

function convert (svc: unknown, slices: Iterable<unknown>, pods: PodLookup, options: KubeConversionOptions, problems: string[], warnings: AnnotationWarning[], waitingFor: Set<string>): Service[] {
  const meta = isObj(svc) ? svc.metadata : undefined
  if (!isObj(meta) || !isName(meta.name) || !isName(meta.namespace)) {
    problems.push(`Service ${objectKey(svc) ?? '(unnamed)'}: metadata: expected a name and a namespace, got ${show(isObj(meta) ? { name: meta.name, namespace: meta.namespace } : meta)}`)
    return []
  }
  const name = meta.name
  const namespace = meta.namespace
  const id = `Service ${namespace}/${name}`
  const report = (field: string, expected: string, got: unknown): void => { problems.push(`${id}: ${field}: expected ${expected}, got ${show(got)}`) }
  const spec = isObj(svc) ? svc.spec : undefined
  if (!isObj(spec)) { report('spec', 'an object', spec); return [] }
  // ExternalName: a DNS alias with no endpoints; nothing for the mesh to balance.
  if (spec.type === 'ExternalName') return []

  const annotations = readAnnotations(meta.annotations, report)
  const policy = policyOf(annotations, `${namespace}/${name}`, problems, warnings)
  let forced: AppProtocol | undefined
  const rawProtocol = annotations[PROTOCOL_ANNOTATION]
  if (rawProtocol !== undefined) {
    const p = rawProtocol.trim() as AppProtocol
    if (PROTOCOLS.includes(p)) forced = p
    else problems.push(`${id}: annotation ${PROTOCOL_ANNOTATION}: expected one of ${PROTOCOLS.join(', ')}, got ${show(rawProtocol)}`)
  }
  const opaquePorts = portSet(annotations[OPAQUE_PORTS_ANNOTATION], (got) => problems.push(`${id}: annotation ${OPAQUE_PORTS_ANNOTATION}: expected comma-separated ports or ranges (3306,5432 or 9000-9010), got ${show(got)}`))
  const clusterIps = clusterIpsOf(spec, report)

  let primary: Family = 'IPv4'
  if (spec.ipFamilies !== undefined && spec.ipFamilies !== null) {
    const first: unknown = Array.isArray(spec.ipFamilies) ? spec.ipFamilies[0] : undefined
    if (first === 'IPv4' || first === 'IPv6') primary = first
    else if (!Array.isArray(spec.ipFamilies)) report('spec.ipFamilies', 'a list such as [IPv4, IPv6]', spec.ipFamilies)
    else if (first !== undefined) report('spec.ipFamilies[0]', 'IPv4 or IPv6', first)
  }

  if (spec.ports === undefined || spec.ports === null) return []
  if (!Array.isArray(spec.ports)) { report('spec.ports', 'a list', spec.ports); return [] }

  const views: SliceView[] = []
  for (const slice of slices) {
    if (sliceServiceKey(slice) !== `${namespace}/${name}`) continue
    const view = readSlice(slice, pods, options.trustDomain, problems, waitingFor)
    if (view !== undefined) views.push(view)
  }

  const inboundPort = options.inboundPort ?? DEFAULT_INBOUND_PORT
  const out: Service[] = []
  const seenPorts = new Map<number, number>()
  ;(spec.ports as unknown[]).forEach((p, i) => {
    const at = `spec.ports[${i}]`
    if (!isObj(p)) { report(at, 'an object', p); return }
    if (p.protocol !== undefined && p.protocol !== null && p.protocol !== 'TCP') {
      // remora proxies TCP (HTTP, gRPC); UDP and SCTP ports are not meshed.
      if (p.protocol !== 'UDP' && p.protocol !== 'SCTP') report(`${at}.protocol`, 'TCP, UDP or SCTP', p.protocol)
      return
    }
    if (!isPort(p.port)) { report(`${at}.port`, 'a port number 1-65535', p.port); return }
    if (p.name !== undefined && p.name !== null && typeof p.name !== 'string') { report(`${at}.name`, 'a string', p.name); return }
    const other = seenPorts.get(p.port)
    if (other !== undefined) { report(`${at}.port`, `a port not already used by spec.ports[${other}]`, p.port); return }
    seenPorts.set(p.port, i)
    const protocol = opaquePorts.has(p.port) ? 'opaque' : forced ?? appProtocol(p.appProtocol, `${at}.appProtocol`, report)
    const endpoints = endpointsFor(views, (p.name as string | undefined | null) ?? '', primary, inboundPort)
    out.push({ name, namespace, port: p.port, protocol, key: serviceKeyOf(name, namespace, p.port), authorities: authoritiesOf(name, namespace, p.port, clusterIps), endpoints, policy })
  })
  return out
}

/** `3306,5432,9000-9010` → the ports; a bad list is reported whole and means none. */
function portSet (raw: string | undefined, bad: (got: string) => void): ReadonlySet<number> {
  if (raw === undefined) return new Set()
  try { return new Set(portsOf(parsePortList(raw))) } catch { bad(raw); return new Set() }
}

/** spec.clusterIPs (or clusterIP): the Service's virtual IPs, which redirected connections name. Headless (`None`) has none. */
function clusterIpsOf (spec: Obj, report: (field: string, expected: string, got: unknown) => void): string[] {
  const raw: unknown = Array.isArray(spec.clusterIPs) ? spec.clusterIPs : spec.clusterIP === undefined || spec.clusterIP === null ? [] : [spec.clusterIP]
  const out: string[] = []
  for (const ip of raw as unknown[]) {
    if (ip === 'None' || ip === '') continue
    if (typeof ip === 'string' && (isIPv4(ip) || isIPv6(ip))) out.push(ip)
    else report('spec.clusterIPs', 'IP addresses (or None)', ip)
  }
  return out
}

function readAnnotations (raw: unknown, report: (field: string, expected: string, got: unknown) => void): Record<string, string> {
  const out: Record<string, string> = {}
  if (raw === undefined || raw === null) return out
  if (!isObj(raw)) { report('metadata.annotations', 'a map of strings', raw); return out }
  for (const [k, v] of Object.entries(raw)) {
    if (typeof v === 'string') out[k] = v
    else if (k.startsWith('remora.dev/')) report(`metadata.annotations["${k}"]`, 'a string', v)
  }
  return out
}

function policyOf (annotations: Record<string, string>, service: string, problems: string[], warnings: AnnotationWarning[]): ServicePolicy {
  const { policy, errors, warnings: noEffect } = policyFromAnnotations(annotations, service)
  problems.push(...errors)
  warnings.push(...noEffect)
  try {
    return servicePolicy(policy)
  } catch (err) {
    problems.push(`Service ${service}: policy annotations: ${(err as Error).message}; defaults apply`)
    return DEFAULT_SERVICE_POLICY
  }
}

function appProtocol (raw: unknown, field: string, report: (field: string, expected: string, got: unknown) => void): AppProtocol {
  if (raw === undefined || raw === null || raw === '') return 'auto'
  const p = typeof raw === 'string' ? APP_PROTOCOLS[raw.toLowerCase()] : undefined
  if (p !== undefined) return p
  report(field, `one of ${Object.keys(APP_PROTOCOLS).join(', ')} (treated as auto)`, raw)
  return 'auto'
}

/** Checks one slice once (not once per port): its ports by name, and its usable endpoints. */
function readSlice (slice: unknown, pods: PodLookup, trustDomain: string, problems: string[], waitingFor: Set<string>): SliceView | undefined {
  const s = slice as Obj
  const namespace = (s.metadata as Obj).namespace as string
  const id = `EndpointSlice ${objectKey(s) ?? `${namespace}/(unnamed)`}`
  const report = (field: string, expected: string, got: unknown): void => { problems.push(`${id}: ${field}: expected ${expected}, got ${show(got)}`) }
  if (s.addressType === 'FQDN') return undefined
  if (s.addressType !== 'IPv4' && s.addressType !== 'IPv6') { report('addressType', 'IPv4, IPv6 or FQDN', s.addressType); return undefined }
  const family: Family = s.addressType
  const ports = new Map<string, number>()
  if (s.ports !== undefined && s.ports !== null) {
    if (!Array.isArray(s.ports)) { report('ports', 'a list', s.ports); return undefined }
    ;(s.ports as unknown[]).forEach((p, i) => {
      if (!isObj(p)) { report(`ports[${i}]`, 'an object', p); return }
      if (p.name !== undefined && p.name !== null && typeof p.name !== 'string') { report(`ports[${i}].name`, 'a string', p.name); return }
      if (!isPort(p.port)) { report(`ports[${i}].port`, 'a port number 1-65535', p.port); return }
      if (p.protocol !== undefined && p.protocol !== null && p.protocol !== 'TCP') return
      ports.set((p.name as string | undefined | null) ?? '', p.port)
    })
  }
  const endpoints: EndpointView[] = []
  // `endpoints: null` is how the API serializes an empty slice.
  if (s.endpoints === undefined || s.endpoints === null) return { family, ports, endpoints }
  if (!Array.isArray(s.endpoints)) { report('endpoints', 'a list', s.endpoints); return { family, ports, endpoints } }
  const validIp = family === 'IPv4' ? isIPv4 : isIPv6
  ;(s.endpoints as unknown[]).forEach((e, i) => {
    const at = `endpoints[${i}]`
    if (!isObj(e)) { report(at, 'an object', e); return }
    const address = Array.isArray(e.addresses) ? e.addresses[0] : undefined
    if (typeof address !== 'string' || !validIp(address)) { report(`${at}.addresses`, `a list starting with an ${family} address`, e.addresses); return }
    const c = e.conditions ?? {}
    if (!isObj(c)) { report(`${at}.conditions`, 'an object', c); return }
    for (const k of ['ready', 'serving', 'terminating']) {
      if (!optBool(c[k])) { report(`${at}.conditions.${k}`, 'true, false or nothing', c[k]); return }
    }
    // Nil `ready` means ready (API docs). Serving + terminating endpoints are kept as the drain fallback.
    const ready = c.ready !== false
    const drain = c.serving === true && c.terminating === true
    if (!ready && !drain) return
    const ref = e.targetRef
    let identity: string
    let pod: string
    if (isObj(ref) && ref.kind === 'Pod') {
      if (!isName(ref.name)) { report(`${at}.targetRef.name`, 'the name of a Pod', ref.name); return }
      const podNs = isName(ref.namespace) ? ref.namespace : namespace
      pod = `${podNs}/${ref.name}`
      // A pod the informer has not seen yet: leave the endpoint out rather than guess its identity
      // (Istio and Linkerd do the same); the source recomputes when the pod arrives.
      const found = pods(podNs, ref.name)
      if (found === undefined) { waitingFor.add(pod); return }
      const sa = isObj(found.spec) ? (found.spec as Obj).serviceAccountName : undefined
      if (sa !== undefined && sa !== null && !isName(sa)) {
        problems.push(`Pod ${pod}: spec.serviceAccountName: expected a service account name, got ${show(sa)}`)
        return
      }
      identity = spiffeId(trustDomain, podNs, sa ?? 'default')
    } else {
      // Not a pod (a hand-written slice): no account to look up; like an address in the mesh file.
      identity = spiffeId(trustDomain, namespace, 'default')
      pod = `ip:${address.toLowerCase()}`
    }
    endpoints.push({ address: address.toLowerCase(), ready, drain, identity, pod })
  })
  return { family, ports, endpoints }
}

/**
 * Endpoints of one Service port: ready ones, or if none is ready the serving + terminating ones (so a
 * draining service keeps answering, as kube-proxy does). One per pod, preferring the primary family.
 */
function endpointsFor (views: readonly SliceView[], portName: string, primary: Family, inboundPort: number): Endpoint[] {
  const all: Candidate[] = []
  for (const v of views) {
    const targetPort = v.ports.get(portName)
    if (targetPort !== undefined) for (const ep of v.endpoints) all.push({ ep, family: v.family, targetPort })
  }
  const ready = all.filter((c) => c.ep.ready)
  const chosen = ready.length > 0 ? ready : all.filter((c) => c.ep.drain)
  const byPod = new Map<string, Candidate>()
  for (const c of chosen) {
    const had = byPod.get(c.ep.pod)
    if (had === undefined || (had.family !== primary && c.family === primary)) byPod.set(c.ep.pod, c)
  }
  const byKey = new Map<string, Endpoint>()
  for (const { ep, targetPort } of byPod.values()) {
    const key = `${ep.address}:${inboundPort}/${targetPort}`
    if (!byKey.has(key)) byKey.set(key, { address: { host: ep.address, port: inboundPort }, targetPort, weight: 1, identity: ep.identity, key })
  }
  // Sorted, so slice order or relists never look like a change.
  return [...byKey.values()].sort((a, b) => a.key < b.key ? -1 : a.key > b.key ? 1 : 0)
}
