// The proxy's configuration: settings + the workload's entry in the mesh file, parsed once and frozen.
import { RemoraError } from '../errors.ts'
import { deepFreeze } from './deep-freeze.ts'
import { isExplicit, ProxySettings, readSettings, type Environment, type HostPort, type LogLevel } from './env.ts'
import { readMeshFile, type AppPort, type MeshConfig, type Workload } from './mesh-file.ts'
import { DEFAULT_INBOUND_POLICY, type InboundPolicy } from '../resilience/policy.ts'

export interface ProxyConfig {
  readonly meshFile: string | undefined
  /** The control plane; when set, the endpoint table comes from it, not from the mesh file. */
  readonly controlAddr: HostPort | undefined
  readonly discoveryTimeout: number
  readonly discoveryIdle: number
  readonly workload: string | undefined
  readonly identity: string | undefined
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
}

export function loadProxyConfig (env: Environment, flags: ReadonlyMap<string, string>): { config: ProxyConfig, mesh: MeshConfig | undefined } {
  const s = readSettings(ProxySettings, env, flags)
  if (s.meshFile === undefined && s.controlAddr === undefined) {
    throw new RemoraError('REMORA_CONFIG_ENV', 'no endpoint source: set REMORA_CONTROL_ADDR (or --control-addr) to the control plane, or REMORA_MESH_FILE (or --mesh-file) to a mesh YAML file such as deploy/local/mesh.yaml')
  }
  const mesh = s.meshFile !== undefined ? readMeshFile(s.meshFile) : undefined
  let workload: Workload | undefined
  if (s.workload !== undefined && mesh !== undefined) {
    workload = mesh.workloads[s.workload]
    if (workload === undefined) {
      const known = Object.keys(mesh.workloads)
      throw new RemoraError('REMORA_WORKLOAD_UNKNOWN', `REMORA_WORKLOAD is "${s.workload}", but ${s.meshFile} has no such entry under workloads: (known: ${known.length > 0 ? known.join(', ') : 'none'})`)
    }
  }
  const pick = (key: 'outboundAddr' | 'inboundAddr' | 'adminAddr', fromMesh: HostPort | undefined): HostPort =>
    (isExplicit(ProxySettings[key], env, flags) ? s[key] : fromMesh ?? s[key]) as HostPort
  const appPorts: readonly AppPort[] = s.appPorts !== undefined
    ? s.appPorts.map((port) => workload?.appPorts.find((p) => p.port === port) ?? { port, protocol: 'auto' as const })
    : workload?.appPorts ?? []
  const config: ProxyConfig = {
    meshFile: s.meshFile,
    controlAddr: s.controlAddr,
    discoveryTimeout: s.discoveryTimeout as number,
    discoveryIdle: s.discoveryIdle as number,
    workload: workload?.name ?? s.workload,
    identity: workload?.identity,
    outboundAddr: pick('outboundAddr', workload?.sidecar.outbound),
    inboundAddr: pick('inboundAddr', workload?.sidecar.inbound),
    adminAddr: pick('adminAddr', workload?.sidecar.admin),
    appPorts,
    logLevel: s.logLevel as LogLevel,
    accessLog: s.accessLog as boolean,
    connectTimeout: s.connectTimeout as number,
    shutdownGrace: s.shutdownGrace as number,
    inbound: workload?.inbound ?? DEFAULT_INBOUND_POLICY,
  }
  return { config: deepFreeze(config), mesh }
}
