// The proxy's configuration: settings + the workload's entry in the mesh file, parsed once and frozen.
import { RemoraError } from '../errors.ts'
import { deepFreeze } from './deep-freeze.ts'
import { isExplicit, podAnnotations, ProxySettings, readSettings, type Environment, type LogLevel, type SettingsOf } from './env.ts'
import type { HostPort } from '../mesh/host-port.ts'
import type { AllowRule, AuthorizationPolicy } from '../mesh/authorization.ts'
import { parseSpiffeId } from '../mesh/spiffe-id.ts'
import type { AppPort, MeshConfig, Workload } from './mesh-file.ts'
import { DEFAULT_INBOUND_POLICY } from '../resilience/policy.ts'
import type { InboundPolicy } from '../mesh/policy.ts'
import { NO_APP_PROBES, type AppProbes } from '../parse/app-probes.ts'

export interface ProxyConfig {
  readonly meshFile: string | undefined
  /** The control plane; when set, the endpoint table comes from it, not from the mesh file. */
  readonly controlAddr: HostPort | undefined
  readonly discoveryTimeout: number
  readonly discoveryIdle: number
  readonly workload: string | undefined
  readonly identity: string | undefined
  /** Where this workload runs, as its telemetry names it (OpenTelemetry resource attributes). */
  readonly placement: Placement
  readonly outboundAddr: HostPort
  readonly inboundAddr: HostPort
  readonly adminAddr: HostPort
  /** Ports the local app listens on; inbound traffic may reach only these. The first is the default. */
  readonly appPorts: readonly AppPort[]
  readonly logLevel: LogLevel
  readonly accessLog: boolean
  readonly connectTimeout: number
  readonly shutdownGrace: number
  /** Inbound protection: concurrency limit and optional rate limit per app port. */
  readonly inbound: InboundPolicy
  /** Mutual TLS; undefined = off (plaintext between sidecars). */
  readonly mtls: MtlsConfig | undefined
  readonly authorization: AuthorizationPolicy
  /** A destination not in the mesh: passed through (allow-any) or refused (registry-only). */
  readonly outboundPolicy: 'allow-any' | 'registry-only'
  /** Carried as opaque TCP without detection (server-first protocols, declared opaque ports). */
  readonly opaquePorts: readonly number[]
  readonly detectTimeout: number
  readonly tcpIdleTimeout: number
  /** The app's probes kubelet reaches through the admin port, GET /app-health/<container>/<kind> (none when unset). */
  readonly appProbes: AppProbes
  /** HTTP/1.1 Upgrade protocols passed to the app (lower-case); others go on as plain requests. */
  readonly upgrades: readonly string[]
  /** How long an HTTP/1.1 request's header may take to arrive, from its first byte (0: no limit). */
  readonly requestHeadersTimeout: number
  /** An idle HTTP/1.1 keep-alive connection from a client is closed after this long. */
  readonly http1IdleTimeout: number
  /** Connections each listener keeps open at once (transport/listener.ts). */
  readonly maxConnections: number
  /** How slowly a request body from the app or a non-meshed client may arrive (http/body-rate.ts). */
  readonly requestBody: BodyRateLimit
  /** Limits on every HTTP/2 client connection: streams, idle and drain timeouts, PING probe (transport/h2-server.ts). */
  readonly h2Downstream: {
    readonly idleTimeout: number
    readonly drainTimeout: number
    readonly pingInterval: number
    readonly maxConcurrentStreams: number
    readonly peerMaxConcurrentStreams: number
    /** Streams a client connection may cancel per 10 s (and over half its streams) before it is closed (a peer's: 10x). */
    readonly maxStreamResets: number
  }
}

/** Apache mod_reqtimeout's body rule: `timeoutMs` from the first read, then one second more per `minBytesPerSecond` bytes. */
export interface BodyRateLimit {
  /** 0: no limit. */
  readonly timeoutMs: number
  /** 0: `timeoutMs` bounds the whole body. */
  readonly minBytesPerSecond: number
}

export interface Placement {
  /** The pod's namespace (downward API), else the mesh file workload's, else the identity's. */
  readonly namespace: string | undefined
  readonly podName: string | undefined
  readonly nodeName: string | undefined
}

export interface MtlsConfig {
  readonly trustAnchorsFile: string
  readonly identity: string
  /** Proof of identity for the CA: a file re-read at every renewal, or the mesh file's bootstrap token. */
  readonly token: { readonly file: string } | { readonly value: string }
  readonly inbound: 'strict' | 'permissive'
}

/**
 * Async only for the mesh file: its reader (YAML parser, schema compiler, ~0.5 MB of JavaScript
 * that a pod's sidecar, fed by the control plane, never needs) is loaded when there is one to read.
 */
export async function loadProxyConfig (env: Environment, flags: ReadonlyMap<string, string>): Promise<{ config: ProxyConfig, mesh: MeshConfig | undefined }> {
  // The pod's remora.dev/* annotations (downward API) come after flags and environment variables.
  const annotations = podAnnotations(ProxySettings.annotationsFile, env, flags)
  const s = readSettings(ProxySettings, env, flags, annotations)
  if (s.meshFile === undefined && s.controlAddr === undefined) {
    throw new RemoraError('REMORA_CONFIG_ENV', 'no endpoint source: set REMORA_CONTROL_ADDR (or --control-addr) to the control plane, or REMORA_MESH_FILE (or --mesh-file) to a mesh YAML file such as deploy/local/mesh.yaml')
  }
  const mesh = s.meshFile !== undefined ? (await import('./mesh-file.ts')).readMeshFile(s.meshFile) : undefined
  let workload: Workload | undefined
  if (s.workload !== undefined && mesh !== undefined) {
    workload = mesh.workloads[s.workload]
    if (workload === undefined) {
      const known = Object.keys(mesh.workloads)
      throw new RemoraError('REMORA_WORKLOAD_UNKNOWN', `REMORA_WORKLOAD is "${s.workload}", but ${s.meshFile} has no such entry under workloads: (known: ${known.length > 0 ? known.join(', ') : 'none'})`)
    }
  }
  const pick = (key: 'outboundAddr' | 'inboundAddr' | 'adminAddr', fromMesh: HostPort | undefined): HostPort =>
    isExplicit(ProxySettings[key], env, flags, annotations) ? s[key] : fromMesh ?? s[key]
  const appPorts: readonly AppPort[] = s.appPorts !== undefined
    ? s.appPorts.map((port) => workload?.appPorts.find((p) => p.port === port) ?? { port, protocol: 'auto' as const })
    : workload?.appPorts ?? []
  const mtls = mtlsConfig(s, workload)
  const authorization: AuthorizationPolicy = {
    // Strict mTLS admits mesh workloads by default; permissive mode exists to let plaintext clients in.
    default: s.authzDefault ?? workload?.authorization.default ?? (mtls?.inbound === 'strict' ? 'all-authenticated' : 'all-unauthenticated'),
    allow: mergeAllow(workload?.authorization.allow ?? {}, s.authzAllow ?? {}),
  }
  const config: ProxyConfig = {
    meshFile: s.meshFile,
    controlAddr: s.controlAddr,
    discoveryTimeout: s.discoveryTimeout,
    discoveryIdle: s.discoveryIdle,
    workload: workload?.name ?? s.workload,
    identity: s.identity ?? workload?.identity,
    placement: { namespace: s.podNamespace ?? workload?.namespace ?? namespaceOf(s.identity), podName: s.podName, nodeName: s.nodeName },
    outboundAddr: pick('outboundAddr', workload?.sidecar.outbound),
    inboundAddr: pick('inboundAddr', workload?.sidecar.inbound),
    adminAddr: pick('adminAddr', workload?.sidecar.admin),
    appPorts,
    logLevel: s.logLevel,
    accessLog: s.accessLog,
    connectTimeout: s.connectTimeout,
    shutdownGrace: s.shutdownGrace,
    inbound: workload?.inbound ?? DEFAULT_INBOUND_POLICY,
    mtls,
    authorization,
    outboundPolicy: s.outboundPolicy,
    opaquePorts: s.opaquePorts,
    detectTimeout: s.detectTimeout,
    tcpIdleTimeout: s.tcpIdleTimeout,
    appProbes: s.appProbes ?? NO_APP_PROBES,
    upgrades: s.upgrades,
    requestHeadersTimeout: s.requestHeadersTimeout,
    http1IdleTimeout: s.http1IdleTimeout,
    maxConnections: s.maxConnections,
    requestBody: { timeoutMs: s.requestBodyTimeout, minBytesPerSecond: s.requestBodyMinRate },
    h2Downstream: {
      idleTimeout: s.downstreamIdleTimeout,
      drainTimeout: s.drainTimeout,
      pingInterval: s.downstreamPingInterval,
      maxConcurrentStreams: s.maxConcurrentStreams,
      peerMaxConcurrentStreams: s.peerMaxConcurrentStreams,
      maxStreamResets: s.maxStreamResets,
    },
  }
  return { config: deepFreeze(config), mesh }
}

function mtlsConfig (s: SettingsOf<typeof ProxySettings>, workload: Workload | undefined): MtlsConfig | undefined {
  if (s.trustAnchors === undefined) return undefined
  const identity = s.identity ?? workload?.identity
  if (identity === undefined) {
    throw new RemoraError('REMORA_CONFIG_ENV', 'REMORA_TRUST_ANCHORS turns mTLS on, which needs this workload\'s identity: set REMORA_IDENTITY (spiffe://<trust-domain>/ns/<ns>/sa/<sa>) or REMORA_WORKLOAD with a mesh file')
  }
  try { parseSpiffeId(identity) } catch (err) {
    throw new RemoraError('REMORA_CONFIG_ENV', `REMORA_IDENTITY: ${(err as Error).message}`)
  }
  if (s.controlAddr === undefined) {
    throw new RemoraError('REMORA_CONFIG_ENV', 'REMORA_TRUST_ANCHORS turns mTLS on, which needs the control plane (its CA signs the certificate): set REMORA_CONTROL_ADDR')
  }
  const token = s.tokenFile !== undefined ? { file: s.tokenFile } : workload?.bootstrapToken !== undefined ? { value: workload.bootstrapToken } : undefined
  if (token === undefined) {
    throw new RemoraError('REMORA_CONFIG_ENV', `mTLS needs a proof of identity for the CA: set REMORA_TOKEN_FILE (in Kubernetes, a projected service account token with audience remora) or give workload "${workload?.name ?? '?'}" a bootstrapToken in the mesh file`)
  }
  return { trustAnchorsFile: s.trustAnchors, identity, token, inbound: s.inboundMtls ?? 'strict' }
}

function namespaceOf (identity: string | undefined): string | undefined {
  if (identity === undefined) return undefined
  try { return parseSpiffeId(identity).namespace } catch { return undefined /* reported by mtlsConfig when it matters */ }
}

function mergeAllow (a: Readonly<Record<number, readonly AllowRule[]>>, b: Readonly<Record<number, readonly AllowRule[]>>): Record<number, readonly AllowRule[]> {
  const out: Record<number, readonly AllowRule[]> = { ...a }
  for (const [port, rules] of Object.entries(b)) out[Number(port)] = [...(out[Number(port)] ?? []), ...rules]
  return out
}
