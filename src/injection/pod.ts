// The sidecar added to one pod: the pod's metadata and spec in, the injected spec out. Pure (plain JSON
// objects, no YAML, no I/O), so `remora inject` and the admission webhook make the same pod; the
// webhook's JSON Patch is the difference of the two specs (patch.ts).
import type { V1Container, V1EnvVar, V1PodSpec, V1Probe, V1Volume } from '@kubernetes/client-node'
import { annotationOf, InitSettings, InjectSettings, ProxySettings, readSettings, type Setting, type SettingsOf } from '../config/env.ts'
import { RemoraError } from '../errors.ts'
import { parseAppProbes } from '../parse/app-probes.ts'
import { isObjectName } from '../mesh/spiffe-id.ts'
import { quantityValue } from '../parse/quantity.ts'

/** What every injected pod gets (remora inject's settings, the injector's later). */
export type MeshWide = Omit<SettingsOf<typeof InjectSettings>, 'namespaceAnnotations'>

export const PROXY_CONTAINER = 'remora-proxy'
export const INIT_CONTAINER = 'remora-init'
export const INJECT_ANNOTATION = 'remora.dev/inject'
export const INJECT_VALUES = ['enabled', 'disabled'] as const

/** The sidecar's ports in an injected pod: the defaults `remora init` redirects to and exempts. */
export const PORTS = Object.freeze({
  inbound: Number(InitSettings.inboundPort.default),
  outbound: Number(InitSettings.outboundPort.default),
  admin: Number(InitSettings.adminPort.default),
})

const PROXY_UID = Number(InitSettings.proxyUid.default)

/** The volumes the injector adds, and where the sidecar (and remora-init) find them. */
export const VOLUMES = Object.freeze({
  podinfo: { name: 'remora-podinfo', dir: '/var/run/remora/podinfo', file: 'annotations' },
  trust: { name: 'remora-trust', dir: '/var/run/remora/trust', file: 'root.pem' },
  token: { name: 'remora-token', dir: '/var/run/secrets/remora', file: 'token', audience: 'remora', expirationSeconds: 3600 },
})
const ANNOTATIONS_FILE = `${VOLUMES.podinfo.dir}/${VOLUMES.podinfo.file}`

const PROBE_KINDS = ['liveness', 'readiness', 'startup'] as const
type ProbeKind = typeof PROBE_KINDS[number]

/** The pod as the workload's template (or the Pod itself) holds it: plain JSON. */
export interface PodInput {
  readonly metadata?: { readonly annotations?: Readonly<Record<string, unknown>> | null } | null
  readonly spec: unknown
}

/** remora.dev/* annotations above the pod (nearest first): only remora.dev/inject is read there. */
export interface OuterAnnotations {
  /** Where they are, for messages: `the Deployment's own metadata`, `--namespace-annotations`. */
  readonly where: string
  readonly annotations: Readonly<Record<string, unknown>> | null | undefined
  /** What to say about any other remora.dev/* annotation found there (it has no effect). */
  readonly misplaced: string
}

export interface InjectTarget {
  /** Names the object in every message: `Deployment demo/web`. */
  readonly object: string
  /** The workload's name: the sidecar's OTEL_SERVICE_NAME. */
  readonly workload: string
  readonly outer?: readonly OuterAnnotations[]
}

export type SkipReason = 'already-injected' | 'disabled' | 'host-network' | 'windows'

export type PodInjection =
  | { readonly injected: true, readonly spec: V1PodSpec }
  | { readonly injected: false, readonly spec: V1PodSpec, readonly skipped: SkipReason, readonly why: string }

// ---------------------------------------------------------------------------------------------------
// Annotations: which remora.dev/* keys a pod may carry, and what each does at injection.

type AnySetting = Setting<unknown>

/** Settings the injector itself fixes: an annotation for one would be silently outvoted (env wins), so it is refused. */
const OWNED: ReadonlyMap<AnySetting, string> = new Map<AnySetting, string>([
  [ProxySettings.meshFile, 'an injected sidecar gets its services from the control plane'],
  [ProxySettings.controlAddr, 'mesh-wide: remora inject --control-addr'],
  [ProxySettings.trustAnchors, 'from the ConfigMap named by --trust-anchors-configmap'],
  [ProxySettings.identity, "from the pod's service account"],
  [ProxySettings.tokenFile, 'a projected service account token'],
  [ProxySettings.podName, 'downward API'],
  [ProxySettings.podNamespace, 'downward API'],
  [ProxySettings.nodeName, 'downward API'],
  [ProxySettings.inboundAddr, `the injected pod's ports are fixed: inbound ${PORTS.inbound}`],
  [ProxySettings.outboundAddr, `the injected pod's ports are fixed: outbound ${PORTS.outbound}`],
  [ProxySettings.adminAddr, `the injected pod's ports are fixed: admin ${PORTS.admin}`],
  [InitSettings.inboundPort, `the injected pod's ports are fixed: inbound ${PORTS.inbound}`],
  [InitSettings.outboundPort, `the injected pod's ports are fixed: outbound ${PORTS.outbound}`],
  [InitSettings.adminPort, `the injected pod's ports are fixed: admin ${PORTS.admin}`],
])

/** Settings whose pod annotation (annotationOf) is honoured: the sidecar and remora init read it at run time. */
const BY_ANNOTATION: ReadonlyMap<string, AnySetting> = new Map(
  [...Object.values(ProxySettings), ...Object.values(InitSettings), ...Object.values(InjectSettings)]
    .filter((s: AnySetting) => s.annotation !== false && !OWNED.has(s))
    .map((s: AnySetting) => [annotationOf(s), s] as const),
)

const OWNED_BY_ANNOTATION: ReadonlyMap<string, string> = new Map([...OWNED].map(([s, why]) => [annotationOf(s), why]))

/**
 * The names the README gave the authorization annotations before the injector (mapped into
 * REMORA_AUTHZ_* through the downward API by hand): still taken, and passed to the sidecar as that variable.
 */
const ALIASES: ReadonlyMap<string, AnySetting> = new Map<string, AnySetting>([
  ['remora.dev/default-policy', ProxySettings.authzDefault],
  ['remora.dev/allow', ProxySettings.authzAllow],
])

/** Every remora.dev/* annotation a pod may carry, sorted (listed in the message about an unknown one). */
export const KNOWN_POD_ANNOTATIONS: readonly string[] = Object.freeze([INJECT_ANNOTATION, ...BY_ANNOTATION.keys(), ...ALIASES.keys()].sort())

const isRemora = (key: string): boolean => key.startsWith('remora.dev/')

/** What the pod's annotations change in the injected pod itself (the rest the sidecar reads at run time). */
interface PodOverrides {
  readonly image: string
  readonly cpuRequest: string
  readonly memoryRequest: string
  readonly memoryLimit: string
  readonly proxyUid: number
  readonly proxyGid: number | undefined
  /** remora.dev/app-ports given: the sidecar reads it; REMORA_APP_PORTS (which would win) is not set. */
  readonly appPortsAnnotated: boolean
  /** Variables from the alias annotations, e.g. REMORA_AUTHZ_DEFAULT from remora.dev/default-policy. */
  readonly aliasEnv: readonly V1EnvVar[]
}

/**
 * A setting read from one annotation through readSettings, whose messages name the annotation and the
 * object; an alias (another name than the setting's own annotation) is read as the setting's.
 */
function fromAnnotation (setting: AnySetting, key: string, value: string, object: string): unknown {
  try {
    return readSettings({ s: setting }, {}, new Map(), { file: object, values: new Map([[annotationOf(setting), value]]) }).s
  } catch (err) {
    if (err instanceof RemoraError) throw new RemoraError('REMORA_INJECT_ANNOTATION', err.message.replace(`annotation ${annotationOf(setting)} `, `annotation ${key} `))
    throw err
  }
}

function injectValue (key: string, value: unknown, where: string, problems: string[]): string | undefined {
  if (value === undefined || value === null) return undefined
  if (typeof value === 'string' && (INJECT_VALUES as readonly string[]).includes(value.trim())) return value.trim()
  problems.push(`annotation ${key} in ${where}: expected ${INJECT_VALUES.join(' or ')}, got ${JSON.stringify(value)}`)
  return undefined
}

/** Checks every remora.dev/* annotation of the pod; all problems at once, one line each. */
function podOverrides (annotations: Readonly<Record<string, unknown>>, mesh: MeshWide, object: string): PodOverrides {
  const problems: string[] = []
  const values = new Map<string, string>()
  for (const [key, value] of Object.entries(annotations)) {
    if (!isRemora(key) || key === INJECT_ANNOTATION) continue
    if (typeof value !== 'string') {
      problems.push(`annotation ${key} in ${object}: annotation values are strings, got ${JSON.stringify(value)}; quote it in YAML`)
      continue
    }
    const owned = OWNED_BY_ANNOTATION.get(key)
    if (owned !== undefined) { problems.push(`annotation ${key} in ${object}: set by the injector (${owned}); remove it`); continue }
    const setting = BY_ANNOTATION.get(key) ?? ALIASES.get(key)
    if (setting === undefined) { problems.push(`annotation ${key} in ${object}: not a remora annotation; known: ${KNOWN_POD_ANNOTATIONS.join(', ')}`); continue }
    try {
      fromAnnotation(setting, key, value, object)
      values.set(key, value)
    } catch (err) {
      problems.push((err as Error).message)
    }
  }
  for (const [alias, setting] of ALIASES) {
    if (values.has(alias) && values.has(annotationOf(setting))) {
      problems.push(`annotations ${alias} and ${annotationOf(setting)} in ${object} say the same thing; keep one (${annotationOf(setting)})`)
    }
  }
  // The value for the pod: its annotation when given, else the mesh-wide setting.
  const pick = <K extends 'proxyImage' | 'proxyCpuRequest' | 'proxyMemoryRequest' | 'proxyMemoryLimit'>(k: K): string => {
    const key = annotationOf(InjectSettings[k])
    const raw = values.get(key)
    return raw !== undefined && raw.trim() !== '' ? fromAnnotation(InjectSettings[k], key, raw, object) as string : mesh[k]
  }
  const init = (setting: AnySetting): unknown => {
    const raw = values.get(annotationOf(setting))
    return raw !== undefined && raw.trim() !== '' ? fromAnnotation(setting, annotationOf(setting), raw, object) : undefined
  }
  const overrides: PodOverrides = {
    image: pick('proxyImage'),
    cpuRequest: pick('proxyCpuRequest'),
    memoryRequest: pick('proxyMemoryRequest'),
    memoryLimit: pick('proxyMemoryLimit'),
    proxyUid: init(InitSettings.proxyUid) as number | undefined ?? PROXY_UID,
    proxyGid: init(InitSettings.proxyGid) as number | undefined,
    appPortsAnnotated: (values.get(annotationOf(ProxySettings.appPorts)) ?? '').trim() !== '',
    aliasEnv: [...ALIASES].flatMap(([alias, setting]) => {
      const raw = values.get(alias)
      return raw !== undefined && raw.trim() !== '' ? [{ name: setting.env, value: raw.trim() }] : []
    }),
  }
  if (problems.length === 0 && quantityValue(overrides.memoryRequest) > quantityValue(overrides.memoryLimit)) {
    const request = annotationOf(InjectSettings.proxyMemoryRequest)
    const limit = annotationOf(InjectSettings.proxyMemoryLimit)
    const named = [request, limit].filter((k) => values.has(k))
    problems.push(`${named.length === 0 ? 'mesh-wide settings' : `annotation ${named.join(' and ')}`} in ${object}: the sidecar's memory request ${overrides.memoryRequest} is above its limit ${overrides.memoryLimit}; raise ${limit} too`)
  }
  if (problems.length > 0) throw new RemoraError('REMORA_INJECT_ANNOTATION', problems.join('\n'))
  return overrides
}

// ---------------------------------------------------------------------------------------------------
// The pod's containers, read defensively: the input is whatever YAML the user wrote.

type Json = Record<string, unknown>
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v)

function containerList (spec: Json, field: 'containers' | 'initContainers', object: string, required: boolean): V1Container[] {
  const list = spec[field]
  if (list === undefined || list === null) {
    if (required) throw new RemoraError('REMORA_INJECT_OBJECT', `${object}: the pod has no ${field}`)
    return []
  }
  if (!Array.isArray(list) || !list.every((c) => isObject(c) && typeof c.name === 'string')) {
    throw new RemoraError('REMORA_INJECT_OBJECT', `${object}: ${field} must be a list of containers, each with a name`)
  }
  return list as V1Container[]
}

/** Init containers with restartPolicy Always: the user's own native sidecars, probed like app containers. */
const isSidecar = (c: V1Container): boolean => c.restartPolicy === 'Always'

/** A probe port as kubelet resolves it: a number, else the container's port of that name, else a number in a string. */
function probePort (port: unknown, c: V1Container, where: string): number {
  let n: number | undefined
  if (typeof port === 'number') n = port
  else if (typeof port === 'string') {
    n = c.ports?.find((p) => p.name === port)?.containerPort
    if (n === undefined && /^\d+$/.test(port)) n = Number(port)
    if (n === undefined) {
      const named = (c.ports ?? []).filter((p) => p.name !== undefined).map((p) => `${p.name}=${p.containerPort}`)
      throw new RemoraError('REMORA_INJECT_OBJECT', `${where}: port "${port}" is not a named port of container ${c.name} (${named.length > 0 ? `its named ports: ${named.join(', ')}` : 'it names no ports'})`)
    }
  }
  if (n === undefined || !Number.isInteger(n) || n < 1 || n > 65535) throw new RemoraError('REMORA_INJECT_OBJECT', `${where}: port ${JSON.stringify(port)} is not a port 1-65535`)
  return n
}

type AppProbeEntry = { port: number, path: string, scheme: 'HTTP' | 'HTTPS', headers: Array<{ name: string, value: string }> } | { port: number, tcp: true }

/**
 * The probe kubelet will send instead (GET /app-health/<container>/<kind> on the admin port) and what the
 * sidecar must run for it; undefined for probes left alone: exec, grpc, and httpGet with its own `host`
 * (kubelet then calls that host, not the pod).
 */
function rewriteProbe (probe: V1Probe, c: V1Container, kind: ProbeKind, where: string): { probe: V1Probe, entry: AppProbeEntry } | undefined {
  let entry: AppProbeEntry
  const get = probe.httpGet
  if (isObject(get)) {
    if (typeof get.host === 'string' && get.host !== '') return undefined
    const path = typeof get.path === 'string' && get.path !== '' ? get.path : '/'
    const scheme = typeof get.scheme === 'string' ? get.scheme.toUpperCase() : 'HTTP'
    if (scheme !== 'HTTP' && scheme !== 'HTTPS') throw new RemoraError('REMORA_INJECT_OBJECT', `${where}: httpGet.scheme must be HTTP or HTTPS, got ${JSON.stringify(get.scheme)}`)
    const given: unknown = get.httpHeaders ?? []
    if (!Array.isArray(given) || !given.every((h) => isObject(h) && typeof h.name === 'string' && typeof h.value === 'string')) {
      throw new RemoraError('REMORA_INJECT_OBJECT', `${where}: httpGet.httpHeaders must be a list of {name, value} strings`)
    }
    const headers = (given as Array<{ name: string, value: string }>).map((h) => ({ name: h.name, value: h.value }))
    entry = { port: probePort(get.port, c, where), path: path.startsWith('/') ? path : `/${path}`, scheme, headers }
  } else if (isObject(probe.tcpSocket)) {
    if (typeof probe.tcpSocket.host === 'string' && probe.tcpSocket.host !== '') return undefined
    entry = { port: probePort(probe.tcpSocket.port, c, where), tcp: true }
  } else {
    return undefined
  }
  // The handler is replaced where it stood; timing fields (period, timeout, thresholds, delay) stay.
  const out: Json = {}
  for (const [k, v] of Object.entries(probe)) {
    out[k === 'tcpSocket' ? 'httpGet' : k] = k === 'httpGet' || k === 'tcpSocket' ? { path: `/app-health/${c.name}/${kind}`, port: PORTS.admin } : v
  }
  return { probe: out as V1Probe, entry }
}

// ---------------------------------------------------------------------------------------------------
// What the injector adds.

const fieldEnv = (name: string, fieldPath: string): V1EnvVar => ({ name, valueFrom: { fieldRef: { fieldPath } } })

function initContainer (image: string): V1Container {
  return {
    name: INIT_CONTAINER,
    image,
    args: ['init'],
    env: [{ name: InitSettings.annotationsFile.env, value: ANNOTATIONS_FILE }],
    resources: { requests: { cpu: '10m', memory: '32Mi' }, limits: { memory: '128Mi' } },
    securityContext: {
      runAsUser: 0,
      runAsGroup: 0,
      runAsNonRoot: false,
      allowPrivilegeEscalation: false,
      // iptables takes its lock in /run.
      readOnlyRootFilesystem: false,
      capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    volumeMounts: [{ name: VOLUMES.podinfo.name, mountPath: VOLUMES.podinfo.dir, readOnly: true }],
  }
}

interface ProxyInputs {
  readonly mesh: MeshWide
  readonly overrides: PodOverrides
  readonly serviceAccount: string
  readonly appPorts: readonly number[]
  readonly probes: Readonly<Record<string, AppProbeEntry>>
  readonly workload: string
}

function proxyContainer ({ mesh, overrides, serviceAccount, appPorts, probes, workload }: ProxyInputs): V1Container {
  const admin = (path: string): V1Probe => ({ httpGet: { path, port: PORTS.admin } })
  const env: V1EnvVar[] = [
    fieldEnv(ProxySettings.podName.env, 'metadata.name'),
    fieldEnv(ProxySettings.podNamespace.env, 'metadata.namespace'),
    fieldEnv(ProxySettings.nodeName.env, 'spec.nodeName'),
    { name: ProxySettings.controlAddr.env, value: mesh.controlAddr },
    { name: ProxySettings.trustAnchors.env, value: `${VOLUMES.trust.dir}/${VOLUMES.trust.file}` },
    { name: ProxySettings.tokenFile.env, value: `${VOLUMES.token.dir}/${VOLUMES.token.file}` },
    // Kubernetes expands $(REMORA_POD_NAMESPACE): it is defined above.
    { name: ProxySettings.identity.env, value: `spiffe://${mesh.trustDomain}/ns/$(${ProxySettings.podNamespace.env})/sa/${serviceAccount}` },
    ...appPorts.length > 0 && !overrides.appPortsAnnotated ? [{ name: ProxySettings.appPorts.env, value: appPorts.join(',') }] : [],
    ...Object.keys(probes).length > 0 ? [{ name: ProxySettings.appProbes.env, value: JSON.stringify(probes) }] : [],
    { name: ProxySettings.annotationsFile.env, value: ANNOTATIONS_FILE },
    ...overrides.aliasEnv,
    ...mesh.otlpEndpoint !== undefined ? [{ name: 'OTEL_EXPORTER_OTLP_ENDPOINT', value: mesh.otlpEndpoint }] : [],
    { name: 'OTEL_SERVICE_NAME', value: workload },
  ]
  const native = mesh.sidecarMode === 'native'
  return {
    name: PROXY_CONTAINER,
    image: overrides.image,
    args: ['proxy'],
    // A native sidecar (Kubernetes 1.29+): started before the app containers, stopped after them.
    ...native ? { restartPolicy: 'Always' } : {},
    // Older clusters: the first container; kubelet starts the next only when postStart returns, i.e. once /ready answers.
    ...native ? {} : { lifecycle: { postStart: { exec: { command: ['node', '-e', WAIT_FOR_READY] } } } },
    ports: [
      { name: 'remora-inbound', containerPort: PORTS.inbound, protocol: 'TCP' },
      { name: 'remora-admin', containerPort: PORTS.admin, protocol: 'TCP' },
    ],
    env,
    resources: {
      requests: { cpu: overrides.cpuRequest, memory: overrides.memoryRequest },
      limits: { memory: overrides.memoryLimit },
    },
    securityContext: {
      runAsUser: overrides.proxyUid,
      runAsGroup: overrides.proxyGid ?? overrides.proxyUid,
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    // The app containers start only once this passes (native), or the postStart hook returns (container): their first requests find the proxy ready.
    startupProbe: { ...admin('/ready'), periodSeconds: 1, failureThreshold: 120 },
    readinessProbe: { ...admin('/ready'), periodSeconds: 2 },
    livenessProbe: admin('/live'),
    volumeMounts: [
      { name: VOLUMES.trust.name, mountPath: VOLUMES.trust.dir, readOnly: true },
      { name: VOLUMES.token.name, mountPath: VOLUMES.token.dir, readOnly: true },
      { name: VOLUMES.podinfo.name, mountPath: VOLUMES.podinfo.dir, readOnly: true },
    ],
  }
}

/** The postStart hook of a proxy that is a plain container: wait (up to 2 min) until /ready answers 200. */
const WAIT_FOR_READY = `const until = Date.now() + 120000; (function ask () { fetch('http://127.0.0.1:${PORTS.admin}/ready').then((r) => { if (r.status === 200) process.exit(0); throw new Error() }).catch(() => { if (Date.now() > until) process.exit(1); setTimeout(ask, 200) }) })()`

function volumes (mesh: MeshWide): V1Volume[] {
  const { podinfo, trust, token } = VOLUMES
  return [
    { name: podinfo.name, downwardAPI: { items: [{ path: podinfo.file, fieldRef: { fieldPath: 'metadata.annotations' } }] } },
    { name: trust.name, configMap: { name: mesh.trustAnchorsConfigMap, items: [{ key: trust.file, path: trust.file }] } },
    { name: token.name, projected: { sources: [{ serviceAccountToken: { audience: token.audience, expirationSeconds: token.expirationSeconds, path: token.file } }] } },
  ]
}

function serviceAccountOf (spec: V1PodSpec, object: string): string {
  const sa = spec.serviceAccountName ?? spec.serviceAccount ?? 'default'
  if (typeof sa !== 'string' || !isObjectName(sa)) {
    throw new RemoraError('REMORA_INJECT_OBJECT', `${object}: serviceAccountName ${JSON.stringify(sa)} is not a service account name`)
  }
  return sa
}

// ---------------------------------------------------------------------------------------------------

/**
 * Adds the sidecar to a pod: `remora-init` first among the init containers, then `remora-proxy` as a
 * native sidecar, the app's httpGet / tcpSocket probes rewritten to the sidecar's admin port, and three
 * volumes. A pod that already has `remora-proxy`, is disabled by remora.dev/inject (pod, then `outer`), or
 * uses the host's network is returned as it is, with the reason. The input is not changed. Throws a
 * RemoraError (REMORA_INJECT_ANNOTATION, REMORA_INJECT_OBJECT) naming the object; several annotation
 * problems come as one error, one line each.
 */
export function injectPod (pod: PodInput, mesh: MeshWide, target: InjectTarget): PodInjection {
  const { object } = target
  if (!isObject(pod.spec)) throw new RemoraError('REMORA_INJECT_OBJECT', `${object}: the pod has no spec`)
  const original = pod.spec
  const spec = structuredClone(original) as V1PodSpec & Json
  const containers = containerList(spec, 'containers', object, true)
  const userInit = containerList(spec, 'initContainers', object, false)
  const unchanged = (skipped: SkipReason, why: string): PodInjection => ({ injected: false, spec: original as unknown as V1PodSpec, skipped, why: `${object}: ${why}` })

  if ([...containers, ...userInit].some((c) => c.name === PROXY_CONTAINER)) return unchanged('already-injected', `already has the ${PROXY_CONTAINER} container; left as it is`)

  const podAnnotations = isObject(pod.metadata?.annotations) ? pod.metadata.annotations : {}
  const problems: string[] = []
  const levels = [{ where: 'the pod', annotations: podAnnotations as Readonly<Record<string, unknown>> }, ...(target.outer ?? [])]
  const placeOf = (where: string): string => where === 'the pod' ? object : `${object} (${where})`
  let decision: { value: string, where: string } | undefined
  for (const level of levels) {
    const annotations = isObject(level.annotations) ? level.annotations : {}
    const value = injectValue(INJECT_ANNOTATION, annotations[INJECT_ANNOTATION], placeOf(level.where), problems)
    if (value !== undefined) decision ??= { value, where: level.where }
  }
  const misplaced: string[] = []
  for (const level of target.outer ?? []) {
    for (const key of Object.keys(isObject(level.annotations) ? level.annotations : {})) {
      if (isRemora(key) && key !== INJECT_ANNOTATION) misplaced.push(`annotation ${key} in ${placeOf(level.where)}: ${level.misplaced}`)
    }
  }
  if (problems.length === 0 && decision?.value === 'disabled') return unchanged('disabled', `${INJECT_ANNOTATION} is disabled on ${decision.where}; left as it is`)
  if (spec.hostNetwork === true) return unchanged('host-network', `hostNetwork: true, so the pod shares the node's network and remora init would redirect the node's traffic; not injected`)
  if (isObject(spec.os) && spec.os.name === 'windows') return unchanged('windows', 'spec.os.name is windows; remora init needs Linux iptables; not injected')

  // Every annotation problem of the object at once, the pod's own first.
  let overrides: PodOverrides | undefined
  try {
    overrides = podOverrides(podAnnotations, mesh, object)
  } catch (err) {
    if (!(err instanceof RemoraError)) throw err
    problems.push(err.message)
  }
  problems.push(...misplaced)
  if (problems.length > 0 || overrides === undefined) throw new RemoraError('REMORA_INJECT_ANNOTATION', problems.join('\n'))

  if ([...containers, ...userInit].some((c) => c.name === INIT_CONTAINER)) throw new RemoraError('REMORA_INJECT_OBJECT', `${object}: a container is already named ${INIT_CONTAINER}, which the injector adds; rename it`)
  const ours = volumes(mesh)
  const userVolumes = spec.volumes ?? []
  if (!Array.isArray(userVolumes)) throw new RemoraError('REMORA_INJECT_OBJECT', `${object}: volumes must be a list`)
  for (const v of ours) {
    if ((userVolumes as unknown[]).some((u) => isObject(u) && u.name === v.name)) throw new RemoraError('REMORA_INJECT_OBJECT', `${object}: a volume is already named ${v.name}, which the injector adds; rename it`)
  }

  // The app's TCP ports (the sidecar admits inbound traffic only to these) and its probes.
  const apps = [...containers, ...userInit.filter(isSidecar)]
  const appPorts: number[] = []
  const probes: Record<string, AppProbeEntry> = {}
  for (const c of apps) {
    if (c.ports != null && (!Array.isArray(c.ports) || !c.ports.every(isObject))) throw new RemoraError('REMORA_INJECT_OBJECT', `${object}: container ${c.name}: ports must be a list of ports`)
    for (const p of c.ports ?? []) {
      if ((p.protocol ?? 'TCP') !== 'TCP') continue
      const port = p.containerPort
      if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RemoraError('REMORA_INJECT_OBJECT', `${object}: container ${c.name}: containerPort ${JSON.stringify(port)} is not a port 1-65535`)
      const clash = Object.entries(PORTS).find(([, sidecar]) => sidecar === port)
      if (clash !== undefined) throw new RemoraError('REMORA_INJECT_OBJECT', `${object}: container ${c.name}: containerPort ${port} is the sidecar's ${clash[0]} port; the app must listen elsewhere`)
      if (!appPorts.includes(port)) appPorts.push(port)
    }
    for (const kind of PROBE_KINDS) {
      const field = `${kind}Probe` as const
      const probe = c[field]
      if (!isObject(probe)) continue
      const rewritten = rewriteProbe(probe, c, kind, `${object}: container ${c.name}, ${field}`)
      if (rewritten === undefined) continue
      c[field] = rewritten.probe
      probes[`${c.name}/${kind}`] = rewritten.entry
    }
  }
  try {
    parseAppProbes(JSON.stringify(probes))
  } catch (err) {
    throw new RemoraError('REMORA_INJECT_OBJECT', `${object}: a probe the sidecar could not run for kubelet: ${(err as Error).message}`)
  }

  const proxy = proxyContainer({
    mesh,
    overrides,
    serviceAccount: serviceAccountOf(spec, object),
    appPorts,
    probes,
    workload: target.workload,
  })
  if (mesh.sidecarMode === 'native') {
    spec.initContainers = [initContainer(overrides.image), proxy, ...userInit]
  } else {
    spec.initContainers = [initContainer(overrides.image), ...userInit]
    spec.containers = [proxy, ...containers]
  }
  spec.volumes = [...userVolumes, ...ours]
  return { injected: true, spec }
}
