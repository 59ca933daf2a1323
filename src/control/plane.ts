// `remora control`: a catalog fed by one source (Kubernetes or the mesh file), served to sidecars on 15012.
import type http from 'node:http'
import type { Logger } from 'pino'
import { RemoraError } from '../errors.ts'
import type { ControlSource, HostPort } from '../config/env.ts'
import { Catalog, type CatalogSource } from './catalog.ts'
import { DiscoveryServer } from './discovery-server.ts'
import { FileCatalogSource } from './file-source.ts'
import { createControlAdmin } from './admin.ts'
import { ControlMetrics } from './metrics.ts'

export interface ControlConfig {
  readonly source: ControlSource
  readonly meshFile: string | undefined
  readonly discoveryAddr: HostPort
  readonly adminAddr: HostPort
  readonly trustDomain: string
  readonly proxyInboundPort: number
}

export interface ControlPlane {
  readonly catalog: Catalog
  readonly metrics: ControlMetrics
  readonly addresses: { readonly discovery: HostPort, readonly admin: HostPort }
  /** Settles when the source's first full view is in the catalog. */
  readonly synced: Promise<void>
  shutdown (why: string): Promise<void>
  readonly stopped: Promise<void>
}

export async function startControl (config: ControlConfig, log: Logger, makeSource?: (onError: (kind: string) => void) => Promise<CatalogSource>): Promise<ControlPlane> {
  const metrics = new ControlMetrics()
  const catalog = new Catalog()
  const onError = (kind: string): void => { metrics.sourceErrors.inc({ source: config.source, kind }) }
  const source = makeSource !== undefined ? await makeSource(onError) : await defaultSource(config, log, onError)
  const discovery = new DiscoveryServer(catalog, log, metrics)
  const admin = createControlAdmin(catalog, metrics, () => catalog.synced
    ? { ready: true, why: `ready: ${catalog.size} services from ${source.name}, revision ${catalog.revision}` }
    : { ready: false, why: `waiting for the first full view from ${source.name}` })
  const addresses = {
    discovery: await discovery.listen(config.discoveryAddr),
    admin: await listen(admin, config.adminAddr),
  }
  const synced = source.start(catalog).then(() => {
    log.info({ source: source.name, services: catalog.size, revision: catalog.revision }, 'control plane synced')
  })
  let markStopped: () => void = () => {}
  const stopped = new Promise<void>((resolve) => { markStopped = resolve })
  let stopping: Promise<void> | undefined
  const shutdown = (why: string): Promise<void> => {
    stopping ??= (async () => {
      log.info({ why }, 'control plane stopping; sidecars keep their tables and reconnect')
      await source.stop()
      await discovery.close()
      admin.close()
      admin.closeAllConnections()
      markStopped()
    })()
    return stopping
  }
  log.info({ source: source.name, ...addresses }, 'control plane listening')
  return { catalog, metrics, addresses, synced, shutdown, stopped }
}

async function defaultSource (config: ControlConfig, log: Logger, onError: (kind: string) => void): Promise<CatalogSource> {
  if (config.source === 'file') {
    if (config.meshFile === undefined) throw new RemoraError('REMORA_CONFIG_ENV', 'REMORA_SOURCE is file, but REMORA_MESH_FILE (or --mesh-file) is not set')
    return new FileCatalogSource(config.meshFile, log, onError)
  }
  // Loaded only for Kubernetes: the client library is large and local use never needs it.
  const { KubeConfig } = await import('@kubernetes/client-node')
  const { KubernetesSource } = await import('./kube-source.ts')
  const kubeConfig = new KubeConfig()
  try {
    kubeConfig.loadFromDefault()
  } catch (err) {
    throw new RemoraError('REMORA_KUBE_CONFIG', `cannot load a Kubernetes configuration (KUBECONFIG, ~/.kube/config or the in-cluster service account): ${(err as Error).message}`, { cause: err })
  }
  if (kubeConfig.getCurrentCluster() === null) {
    throw new RemoraError('REMORA_KUBE_CONFIG', 'no Kubernetes cluster configured: run in a pod with a service account, set KUBECONFIG, or use REMORA_SOURCE=file with REMORA_MESH_FILE')
  }
  return new KubernetesSource({ kubeConfig, trustDomain: config.trustDomain, inboundPort: config.proxyInboundPort, log, onError })
}

function listen (server: http.Server, addr: HostPort): Promise<HostPort> {
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(new RemoraError('REMORA_LISTEN', `control admin listener cannot bind ${addr.host}:${addr.port}: ${err.code ?? err.message}`)))
    server.listen(addr.port, addr.host, () => {
      const a = server.address() as { address: string, port: number }
      resolve({ host: a.address, port: a.port })
    })
  })
}
