// `remora control`: a catalog fed by one source (Kubernetes or the mesh file), served to sidecars on
// 15012, and — with a CA — certificates for the identities sidecars prove, on the same port over mTLS;
// in Kubernetes with a CA, the CA's roots published into every meshed namespace (trust-anchors.ts) and the
// admission webhook that injects the sidecar served (injector.ts).
import type http from 'node:http'
import { existsSync } from 'node:fs'
import { isIP } from 'node:net'
import { homedir } from 'node:os'
import { join } from 'node:path'
import type { KubeConfig } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import { RemoraError } from '../errors.ts'
import type { ControlSource } from '../config/env.ts'
import type { HostPort } from '../mesh/host-port.ts'
import { spiffeId } from '../mesh/spiffe-id.ts'
import type { CertificateAuthority } from '../identity/ca.ts'
import { RENEW_AT_FRACTION } from '../identity/keys.ts'
import { ANNOTATIONS_WITHOUT_EFFECT } from '../resilience/annotations.ts'
import { Catalog, type CatalogSource } from './catalog.ts'
import { DiscoveryServer, type ServingTls } from './discovery-server.ts'
import { FileCatalogSource } from './file-source.ts'
import { createControlAdmin } from './admin.ts'
import { ControlMetrics } from './metrics.ts'
import { loadCa, type ControlCaSetting } from './ca-store.ts'
import type { TrustAnchorPublisher } from './trust-anchors.ts'
import { BootstrapTokens, TokenReviews, type IdentityProof } from './identity-proof.ts'
import { Signer } from './signing.ts'
import type { MeshWide } from '../injection/pod.ts'
import type { ControlInjector } from './injector.ts'

export interface ControlConfig {
  readonly source: ControlSource
  readonly meshFile: string | undefined
  readonly discoveryAddr: HostPort
  readonly adminAddr: HostPort
  readonly trustDomain: string
  readonly proxyInboundPort: number
  readonly ca: ControlCaSetting
  readonly certTtlMs: number
  readonly servingNames: readonly string[]
  /** With a CA and the Kubernetes source: the ConfigMap of the roots kept in every meshed namespace; undefined: none. */
  readonly trustAnchorsConfigMap?: string
  /** With a CA and the Kubernetes source: the admission webhook (injector.ts); undefined: none. */
  readonly injector?: { readonly addr: HostPort, readonly dnsNames: readonly string[], readonly mesh: MeshWide }
}

export interface ControlPlane {
  readonly catalog: Catalog
  readonly metrics: ControlMetrics
  readonly addresses: { readonly discovery: HostPort, readonly admin: HostPort, readonly injector?: HostPort }
  /** Settles when the source's first full view is in the catalog. */
  readonly synced: Promise<void>
  shutdown (why: string): Promise<void>
  readonly stopped: Promise<void>
}

/** The control plane's own identity, in the certificate of its discovery port. */
export const CONTROL_NAMESPACE = 'remora-system'
export const CONTROL_SERVICE_ACCOUNT = 'remora-control'
const SERVING_TTL_MS = 24 * 3600_000

export async function startControl (config: ControlConfig, log: Logger, makeSource?: (onError: (kind: string) => void) => Promise<CatalogSource>): Promise<ControlPlane> {
  const metrics = new ControlMetrics()
  const catalog = new Catalog()
  const onError = (kind: string): void => { metrics.sourceErrors.inc({ source: config.source, kind }) }
  const tokens = new BootstrapTokens()
  const kubeConfig = config.source === 'kubernetes' && makeSource === undefined ? await loadKubeConfig() : undefined
  const source = makeSource !== undefined ? await makeSource(onError) : await defaultSource(config, kubeConfig, log, onError, tokens, metrics)
  const ca = config.ca.kind === 'off' ? undefined : await loadCa(config.ca, config.trustDomain, log, kubeConfig)
  let signer: Signer | undefined
  if (ca !== undefined) {
    const proof: IdentityProof = kubeConfig !== undefined ? new TokenReviews(kubeConfig, config.trustDomain) : tokens
    signer = new Signer(ca, proof, config.certTtlMs, log, metrics)
    metrics.caExpiry.set(ca.issuerNotAfter.getTime() / 1000)
  }
  const discovery = new DiscoveryServer(catalog, log, metrics, ca === undefined ? undefined : await servingTls(ca, config), signer)
  // The discovery port's own certificate: renewed at 70 % of its lifetime, retried each minute on failure.
  let renewTimer: NodeJS.Timeout | undefined
  const scheduleRenewal = (ms: number): void => {
    if (ca === undefined) return
    renewTimer = setTimeout(() => {
      servingTls(ca, config).then((tls) => {
        discovery.setCredentials(tls)
        log.info('discovery port certificate renewed')
        scheduleRenewal(SERVING_TTL_MS * RENEW_AT_FRACTION)
      }, (err: Error) => {
        log.error({ err: err.message }, 'discovery port certificate not renewed; retrying in 1 min')
        scheduleRenewal(60_000)
      })
    }, ms).unref()
  }
  scheduleRenewal(SERVING_TTL_MS * RENEW_AT_FRACTION)
  const admin = createControlAdmin(catalog, metrics, () => catalog.synced
    ? { ready: true, why: `ready: ${catalog.size} services from ${source.name}, revision ${catalog.revision}` }
    : { ready: false, why: `waiting for the first full view from ${source.name}` })
  const injector = ca !== undefined && kubeConfig !== undefined && config.injector !== undefined
    ? await startInjector(ca, kubeConfig, config, log, metrics)
    : undefined
  const addresses = {
    discovery: await discovery.listen(config.discoveryAddr),
    admin: await listen(admin, config.adminAddr),
    ...(injector !== undefined && { injector: injector.address }),
  }
  const synced = source.start(catalog).then(() => {
    log.info({ source: source.name, services: catalog.size, revision: catalog.revision }, 'control plane synced')
  })
  const anchors = ca !== undefined && kubeConfig !== undefined && config.trustAnchorsConfigMap !== undefined
    ? await publishTrustAnchors(kubeConfig, config.trustAnchorsConfigMap, ca, log, metrics)
    : undefined
  let markStopped: () => void = () => {}
  const stopped = new Promise<void>((resolve) => { markStopped = resolve })
  let stopping: Promise<void> | undefined
  const shutdown = (why: string): Promise<void> => {
    stopping ??= (async () => {
      log.info({ why }, 'control plane stopping; sidecars keep their tables and reconnect')
      clearTimeout(renewTimer)
      await anchors?.stop()
      await injector?.stop()
      await source.stop()
      await discovery.close()
      admin.close()
      admin.closeAllConnections()
      markStopped()
    })()
    return stopping
  }
  log.info({ source: source.name, ca: config.ca.kind, ...addresses }, 'control plane listening')
  return { catalog, metrics, addresses, synced, shutdown, stopped }
}

/** Starts keeping the CA's roots in every meshed namespace; not awaited: the catalog does not wait for it. */
async function publishTrustAnchors (kubeConfig: KubeConfig, configMap: string, ca: CertificateAuthority, log: Logger, metrics: ControlMetrics): Promise<TrustAnchorPublisher> {
  const { TrustAnchorPublisher } = await import('./trust-anchors.ts')
  const anchors = new TrustAnchorPublisher({
    kubeConfig, log, configMap, rootsPem: ca.trustAnchorsPem.join(''),
    onError: (kind) => { metrics.sourceErrors.inc({ source: 'kubernetes', kind }) },
    onWrite: (action, result) => { metrics.trustAnchorWrites.inc({ action, result }) },
  })
  for (const action of ['create', 'update']) for (const result of ['ok', 'error']) metrics.trustAnchorWrites.inc({ action, result }, 0)
  // It fails only when stopped before its first list; list and watch failures are retried (and logged) inside.
  anchors.start().catch(() => {})
  return anchors
}

async function startInjector (ca: CertificateAuthority, kubeConfig: KubeConfig, config: ControlConfig, log: Logger, metrics: ControlMetrics): Promise<ControlInjector> {
  const { startControlInjector } = await import('./injector.ts')
  const settings = config.injector as NonNullable<ControlConfig['injector']>
  for (const outcome of ['injected', 'skipped', 'refused', 'not-a-pod', 'malformed']) metrics.admissionReviews.inc({ outcome }, 0)
  return startControlInjector({
    ca, kubeConfig, log, addr: settings.addr, dnsNames: settings.dnsNames, mesh: settings.mesh,
    identity: spiffeId(config.trustDomain, CONTROL_NAMESPACE, CONTROL_SERVICE_ACCOUNT),
    onReview: (outcome) => { metrics.admissionReviews.inc({ outcome }) },
    onError: (kind) => { metrics.sourceErrors.inc({ source: 'kubernetes', kind }) },
  })
}

async function servingTls (ca: CertificateAuthority, config: ControlConfig): Promise<ServingTls> {
  const issued = await ca.issueServing({
    dnsNames: config.servingNames.filter((n) => isIP(n) === 0),
    ipAddresses: config.servingNames.filter((n) => isIP(n) !== 0),
    identity: spiffeId(config.trustDomain, CONTROL_NAMESPACE, CONTROL_SERVICE_ACCOUNT),
    ttlMs: SERVING_TTL_MS,
  })
  return { key: issued.key.privateKeyPem, cert: issued.chainPem.join(''), ca: issued.trustAnchorsPem }
}

async function loadKubeConfig (): Promise<KubeConfig> {
  // Loaded only for Kubernetes: the client library is large and local use never needs it.
  const { KubeConfig } = await import('@kubernetes/client-node')
  const kubeConfig = new KubeConfig()
  try {
    kubeConfig.loadFromDefault()
  } catch (err) {
    throw new RemoraError('REMORA_KUBE_CONFIG', `cannot load a Kubernetes configuration (KUBECONFIG, ~/.kube/config or the in-cluster service account): ${(err as Error).message}`, { cause: err })
  }
  // With none of these, client-node quietly falls back to http://localhost:8080 and every list fails forever.
  const configured = process.env.KUBECONFIG !== undefined || process.env.KUBERNETES_SERVICE_HOST !== undefined || existsSync(join(homedir(), '.kube', 'config'))
  if (!configured || kubeConfig.getCurrentCluster() === null) {
    throw new RemoraError('REMORA_KUBE_CONFIG', 'no Kubernetes cluster configured: run in a pod with a service account, set KUBECONFIG, or use REMORA_SOURCE=file with REMORA_MESH_FILE')
  }
  return kubeConfig
}

async function defaultSource (config: ControlConfig, kubeConfig: KubeConfig | undefined, log: Logger, onError: (kind: string) => void, tokens: BootstrapTokens, metrics: ControlMetrics): Promise<CatalogSource> {
  if (config.source === 'file' || kubeConfig === undefined) {
    if (config.meshFile === undefined) throw new RemoraError('REMORA_CONFIG_ENV', 'REMORA_SOURCE is file, but REMORA_MESH_FILE (or --mesh-file) is not set')
    return new FileCatalogSource(config.meshFile, log, onError, (mesh) => tokens.update(mesh.workloads))
  }
  const { KubernetesSource } = await import('./kube-source.ts')
  // Every series from the start at 0, so "> 0" alerts and dashboards see them before the first one.
  for (const kind of ['Service', 'Pod']) for (const annotation of Object.keys(ANNOTATIONS_WITHOUT_EFFECT)) metrics.annotationsWithoutEffect.set({ kind, annotation }, 0)
  return new KubernetesSource({
    kubeConfig, trustDomain: config.trustDomain, inboundPort: config.proxyInboundPort, log, onError,
    onAnnotationWithoutEffect: (kind, annotation, delta) => { metrics.annotationsWithoutEffect.inc({ kind, annotation }, delta) },
  })
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
