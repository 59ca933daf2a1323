// The mesh's trust anchors in every meshed namespace, as Istio publishes istio-ca-root-cert: a ConfigMap whose
// root.pem is the CA's root(s), which the injected sidecars mount. Created where missing, put back when edited or
// deleted, rewritten when the roots change; a namespace that stops being meshed keeps its ConfigMap as it is.
import { CoreV1Api, type KubeConfig, type KubernetesObject, type V1ConfigMap } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import { backoffMs } from '../resilience/backoff.ts'
import { KubeInformers, type KubeSourceErrorKind } from './kube-informer.ts'
import { MANAGED_BY, apiMessage, apiStatus } from './ca-store.ts'

/** A namespace is meshed when it carries this label or annotation with the value `enabled`. */
export const INJECT_KEY = 'remora.dev/inject'
/** The ConfigMap's one key. */
export const TRUST_ANCHORS_KEY = 'root.pem'
/** How many namespaces are written to at once. */
const CONCURRENCY = 4
const DEFAULT_BACKOFF = { baseMs: 500, maxMs: 30_000 }

type Resource = 'namespaces' | 'configmaps'
export type TrustAnchorWrite = 'create' | 'update'

export interface TrustAnchorOptions {
  readonly kubeConfig: KubeConfig
  readonly log: Logger
  /** The ConfigMap's name in each meshed namespace (REMORA_TRUST_ANCHORS_CONFIGMAP). */
  readonly configMap: string
  /** The CA's root(s), PEM: what root.pem holds. */
  readonly rootsPem: string
  /** A failed list or watch of namespaces or ConfigMaps (for the source-errors metric). */
  readonly onError?: (kind: KubeSourceErrorKind) => void
  readonly onWrite?: (action: TrustAnchorWrite, result: 'ok' | 'error') => void
  /** Retry delay of a namespace whose write failed, and of the informers: exponential with full jitter. */
  readonly backoff?: { readonly baseMs: number, readonly maxMs: number }
}

/** Meshed: `remora.dev/inject: enabled` as a label (what a webhook's namespaceSelector can select) or an annotation. */
export function isMeshedNamespace (ns: KubernetesObject): boolean {
  const m = ns.metadata
  const terminating = m?.deletionTimestamp !== undefined && m?.deletionTimestamp !== null
  return !terminating && (m?.labels?.[INJECT_KEY] === 'enabled' || m?.annotations?.[INJECT_KEY] === 'enabled')
}

/** What the publisher keeps of a Namespace: whether it is meshed is all it reads. */
function slimNamespace (ns: KubernetesObject): KubernetesObject {
  const m = ns.metadata ?? {}
  const pick = (r: Record<string, string> | undefined): Record<string, string> | undefined => r?.[INJECT_KEY] === undefined ? undefined : { [INJECT_KEY]: r[INJECT_KEY] }
  return { apiVersion: ns.apiVersion, kind: ns.kind, metadata: { name: m.name, resourceVersion: m.resourceVersion, uid: m.uid, labels: pick(m.labels), annotations: pick(m.annotations), deletionTimestamp: m.deletionTimestamp } }
}

/** Per namespace: a retry waiting, and failures since the last success. */
interface Retry { timer?: NodeJS.Timeout, failures: number }

export class TrustAnchorPublisher {
  readonly #o: TrustAnchorOptions
  readonly #api: CoreV1Api
  readonly #informers: KubeInformers<Resource>
  /** Meshed namespaces, as the namespace informer says. */
  readonly #meshed = new Set<string>()
  /** The ConfigMap of that name in each namespace that has one, as the ConfigMap informer (or our last write) says. */
  readonly #maps = new Map<string, V1ConfigMap>()
  readonly #queue = new Set<string>()
  readonly #inFlight = new Set<string>()
  readonly #retries = new Map<string, Retry>()
  #roots: string
  #listed = false
  #stopped = false

  constructor (options: TrustAnchorOptions) {
    this.#o = options
    this.#roots = options.rootsPem
    this.#api = options.kubeConfig.makeApiClient(CoreV1Api)
    this.#informers = new KubeInformers<Resource>(
      { kubeConfig: options.kubeConfig, log: options.log, onError: options.onError, backoff: options.backoff },
      { namespaces: slimNamespace },
      (resource, obj, deleted) => { if (resource === 'namespaces') this.#namespace(obj, deleted); else this.#configMap(obj, deleted) },
      [
        // Every namespace (there are few, and each is slimmed): a label selector would miss the annotated ones.
        { resource: 'namespaces' },
        { resource: 'configmaps', fieldSelector: `metadata.name=${options.configMap}` },
      ],
    )
  }

  /** Starts watching; resolves once both informers have listed and every meshed namespace is queued. */
  async start (): Promise<void> {
    this.#o.log.info({ configMap: this.#o.configMap, key: TRUST_ANCHORS_KEY }, `publishing the trust anchors as ConfigMap ${this.#o.configMap} into every namespace with ${INJECT_KEY}=enabled (label or annotation)`)
    await this.#informers.start()
    this.#listed = true
    for (const ns of this.#meshed) this.#enqueue(ns)
    this.#o.log.info({ namespaces: this.#meshed.size }, 'trust anchors: meshed namespaces listed')
  }

  async stop (): Promise<void> {
    this.#stopped = true
    for (const r of this.#retries.values()) clearTimeout(r.timer)
    await this.#informers.stop()
  }

  /** New roots (a CA rotation): every meshed namespace's ConfigMap is brought to them. */
  setRoots (rootsPem: string): void {
    if (rootsPem === this.#roots) return
    this.#roots = rootsPem
    for (const ns of this.#meshed) this.#enqueue(ns)
  }

  /** Meshed namespaces whose ConfigMap is as it should be (tests, readiness checks). */
  get published (): number {
    let n = 0
    for (const ns of this.#meshed) if (this.#isCurrent(this.#maps.get(ns))) n++
    return n
  }

  #namespace (obj: KubernetesObject, deleted: boolean): void {
    const name = obj.metadata?.name
    if (name === undefined) return
    const meshed = !deleted && isMeshedNamespace(obj)
    if (meshed) {
      const added = !this.#meshed.has(name)
      this.#meshed.add(name)
      if (added) this.#enqueue(name)
      return
    }
    if (!this.#meshed.delete(name)) return
    this.#dropRetry(name)
    if (!deleted && this.#listed) this.#o.log.info({ namespace: name, configMap: this.#o.configMap }, `namespace ${name} is no longer meshed; its ConfigMap ${this.#o.configMap} is left as it is (pods injected earlier still mount it)`)
  }

  #configMap (obj: KubernetesObject, deleted: boolean): void {
    const ns = obj.metadata?.namespace
    if (ns === undefined || obj.metadata?.name !== this.#o.configMap) return
    if (deleted) this.#maps.delete(ns)
    else this.#maps.set(ns, obj as V1ConfigMap)
    if (this.#meshed.has(ns)) this.#enqueue(ns)
  }

  /** The ConfigMap holds exactly the roots, under our label. */
  #isCurrent (cm: V1ConfigMap | undefined): boolean {
    if (cm === undefined) return false
    const data = cm.data ?? {}
    const keys = Object.keys(data)
    return keys.length === 1 && data[TRUST_ANCHORS_KEY] === this.#roots && Object.keys(cm.binaryData ?? {}).length === 0 &&
      cm.metadata?.labels?.['app.kubernetes.io/managed-by'] === MANAGED_BY['app.kubernetes.io/managed-by']
  }

  #enqueue (ns: string): void {
    if (!this.#listed || this.#stopped) return
    const retry = this.#retries.get(ns)
    if (retry?.timer !== undefined) return
    this.#queue.add(ns)
    this.#drain()
  }

  #drain (): void {
    while (!this.#stopped && this.#inFlight.size < CONCURRENCY) {
      const ns = [...this.#queue].find((n) => !this.#inFlight.has(n))
      if (ns === undefined) return
      this.#queue.delete(ns)
      this.#inFlight.add(ns)
      void this.#reconcile(ns).finally(() => {
        this.#inFlight.delete(ns)
        this.#drain()
      })
    }
  }

  async #reconcile (ns: string): Promise<void> {
    if (!this.#meshed.has(ns) || this.#isCurrent(this.#maps.get(ns))) return
    const action: TrustAnchorWrite = this.#maps.has(ns) ? 'update' : 'create'
    try {
      const done = await this.#write(ns)
      if (done !== undefined) this.#o.onWrite?.(done, 'ok')
      this.#retries.delete(ns)
    } catch (err) {
      if (this.#stopped) return
      this.#o.onWrite?.(action, 'error')
      const retry = this.#retries.get(ns) ?? { failures: 0 }
      this.#retries.set(ns, retry)
      const { baseMs, maxMs } = this.#o.backoff ?? DEFAULT_BACKOFF
      const delay = backoffMs(++retry.failures, baseMs, maxMs)
      this.#o.log.warn({ namespace: ns, configMap: this.#o.configMap, attempt: retry.failures, retryInMs: delay }, `trust anchors not published in namespace ${ns}: ${apiMessage(err)}; retrying (the control plane needs get, create and update on configmaps)`)
      retry.timer = setTimeout(() => { retry.timer = undefined; this.#enqueue(ns) }, delay)
      retry.timer.unref()
    }
  }

  /**
   * Creates the ConfigMap, or replaces it (at the resourceVersion seen, so a concurrent edit is not lost unseen):
   * a create that finds one (409: another replica, or a user) and a replace that finds it changed (409) or gone
   * (404) read it again and try once more. Returns what it did: nothing when it found someone had done it.
   */
  async #write (ns: string): Promise<TrustAnchorWrite | undefined> {
    const name = this.#o.configMap
    let current = this.#maps.get(ns)
    for (let attempt = 1; ; attempt++) {
      try {
        if (current === undefined) {
          const created = await this.#api.createNamespacedConfigMap({ namespace: ns, body: this.#desired(ns, undefined) })
          this.#maps.set(ns, created)
          this.#o.log.info({ namespace: ns, configMap: name }, `trust anchors published: created ConfigMap ${ns}/${name}`)
          return 'create'
        }
        const replaced = await this.#api.replaceNamespacedConfigMap({ namespace: ns, name, body: this.#desired(ns, current) })
        this.#maps.set(ns, replaced)
        this.#o.log.info({ namespace: ns, configMap: name }, `trust anchors published: ConfigMap ${ns}/${name} differed from the CA's roots (edited, or new roots) and was put back`)
        return 'update'
      } catch (err) {
        const status = apiStatus(err)
        if (attempt >= 3 || (status !== 409 && !(status === 404 && current !== undefined))) throw err
      }
      current = await this.#read(ns)
      if (this.#isCurrent(current)) return undefined
    }
  }

  async #read (ns: string): Promise<V1ConfigMap | undefined> {
    try {
      const cm = await this.#api.readNamespacedConfigMap({ namespace: ns, name: this.#o.configMap })
      this.#maps.set(ns, cm)
      return cm
    } catch (err) {
      if (apiStatus(err) !== 404) throw err
      this.#maps.delete(ns)
      return undefined
    }
  }

  /** The ConfigMap as it should be: the roots alone, our label; the rest of `current`'s metadata kept. */
  #desired (ns: string, current: V1ConfigMap | undefined): V1ConfigMap {
    const m = current?.metadata
    return {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        name: this.#o.configMap,
        namespace: ns,
        labels: { ...m?.labels, ...MANAGED_BY },
        ...(m?.annotations !== undefined && { annotations: m.annotations }),
        ...(m?.resourceVersion !== undefined && { resourceVersion: m.resourceVersion }),
      },
      data: { [TRUST_ANCHORS_KEY]: this.#roots },
    }
  }

  #dropRetry (ns: string): void {
    clearTimeout(this.#retries.get(ns)?.timer)
    this.#retries.delete(ns)
    this.#queue.delete(ns)
  }
}
