// The control plane's informers (the Kubernetes source's, one per resource and namespace, and the trust-anchor
// publisher's): list then watch, bookmarks, relist on 410, restart with backoff.
import { ListWatch, Watch, type KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import { backoffMs } from '../resilience/backoff.ts'
import { isJsonObject, listAllPages } from './kube-list.ts'
import { objectKey } from './kube-objects.ts'

/** What the Kubernetes source watches. */
export type KubeResource = 'services' | 'endpointslices' | 'pods'
/** Everything the control plane watches: the source's resources, the trust-anchor publisher's, the caBundle keeper's. */
export type InformedResource = KubeResource | 'namespaces' | 'configmaps' | 'mutatingwebhookconfigurations'
/** What onError counts: a failed list or watch of a resource, or a malformed object. */
export type KubeSourceErrorKind = InformedResource | 'malformed'
/** What the source keeps of an object of some resource: the rest is never read, so need not stay in memory. */
export type ObjectSlimmer = (o: KubernetesObject) => KubernetesObject
/** An object an informer saw added or changed (`deleted` false), or deleted. */
export type ObjectHandler<R extends InformedResource = KubeResource> = (resource: R, obj: KubernetesObject, deleted: boolean) => void

/** One informer: a resource in one namespace (or all, or a cluster-scoped resource), and its selectors. */
export interface InformerSpec<R extends InformedResource> {
  readonly resource: R
  readonly namespace?: string
  readonly labelSelector?: string
  readonly fieldSelector?: string
}

export interface KubeInformerOptions {
  readonly kubeConfig: KubeConfig
  readonly log: Logger
  /** Watch only these namespaces (one informer per namespace and resource). Default: all. */
  readonly namespaces?: readonly string[]
  /** Called once per failed list/watch and once per object left out as malformed (for the source-errors metric). */
  readonly onError?: (kind: KubeSourceErrorKind) => void
  /** Restart delay after a failed list or watch: exponential with full jitter. Default 500 ms to 30 s. */
  readonly backoff?: { readonly baseMs: number, readonly maxMs: number }
  /** Items per list page. Default 500 (as client-go). */
  readonly pageSize?: number
}

const RESOURCES = ['services', 'endpointslices', 'pods'] as const
const API_PREFIX: Record<InformedResource, string> = { services: '/api/v1', endpointslices: '/apis/discovery.k8s.io/v1', pods: '/api/v1', namespaces: '/api/v1', configmaps: '/api/v1', mutatingwebhookconfigurations: '/apis/admissionregistration.k8s.io/v1' }
const DEFAULT_BACKOFF = { baseMs: 500, maxMs: 30_000 }
const DEFAULT_PAGE_SIZE = 500
const REWATCH_MAX_DELAY_MS = 250

/** One resource in one namespace (or all), and what its restarts and its first list need to know. */
interface Informer<R extends InformedResource> {
  readonly resource: R
  readonly path: string
  readonly selectors: { readonly labelSelector?: string, readonly fieldSelector?: string }
  readonly listWatch: ListWatch<KubernetesObject>
  /** Its first list has reached the handler. */
  listed: boolean
  /** Failures since it last held (or saw an event): how far the next restart backs off. */
  failures: number
  /** Every error so far: an error while it starts means it did not come up. */
  errors: number
  upSince?: number
  restartTimer?: NodeJS.Timeout
}

/**
 * Informers started and stopped together: by default the Kubernetes source's (Services, EndpointSlices, Pods in
 * each of `options.namespaces`, or all), else those `specs` name. Each object they see goes to the handler; an
 * object without a name is left out (it would break client-node's cache) and reported once.
 */
export class KubeInformers<R extends InformedResource = KubeResource> {
  readonly #o: KubeInformerOptions
  readonly #slim: Partial<Record<R, ObjectSlimmer>>
  readonly #onObject: ObjectHandler<R>
  readonly #informers: Array<Informer<R>> = []
  readonly #abort = new AbortController()
  #whenListed?: { resolve: () => void, reject: (err: Error) => void }

  constructor (options: KubeInformerOptions, slim: Partial<Record<R, ObjectSlimmer>>, onObject: ObjectHandler<R>, specs?: ReadonlyArray<InformerSpec<R>>) {
    this.#o = options
    this.#slim = slim
    this.#onObject = onObject
    for (const spec of specs ?? sourceSpecs(options.namespaces) as unknown as ReadonlyArray<InformerSpec<R>>) this.#informers.push(this.#informer(spec))
  }

  /** Starts every informer; resolves once each has listed once and the handler has seen the items. */
  start (): Promise<void> {
    const listed = new Promise<void>((resolve, reject) => { this.#whenListed = { resolve, reject } })
    for (const informer of this.#informers) void this.#run(informer)
    return listed
  }

  async stop (): Promise<void> {
    this.#abort.abort()
    for (const informer of this.#informers) clearTimeout(informer.restartTimer)
    await Promise.all(this.#informers.map((i) => i.listWatch.stop()))
    this.#whenListed?.reject(new Error('Kubernetes source stopped before its first sync'))
  }

  #informer (spec: InformerSpec<R>): Informer<R> {
    const { resource, labelSelector, fieldSelector } = spec
    const path = resourcePath(resource, spec.namespace)
    const signal = this.#abort.signal
    const slim = this.#slim[resource]
    const watch = new InformerWatch(this.#o.kubeConfig, signal, slim, (obj) => this.#malformed(resource, obj))
    const list = (): Promise<KubernetesListObject<KubernetesObject>> => this.#list(informer)
    // What makeInformer builds, with a Watch that asks for bookmarks, and a shorter re-watch delay (rewatchDelay).
    const listWatch = new ListWatch<KubernetesObject>(path, watch, list, false, labelSelector, fieldSelector, { delayFn: rewatchDelay(signal) })
    const informer: Informer<R> = { resource, path, selectors: { labelSelector, fieldSelector }, listWatch, listed: false, failures: 0, errors: 0 }
    const on = (obj: KubernetesObject, deleted: boolean): void => {
      informer.failures = 0
      try {
        this.#onObject(resource, obj, deleted)
      } catch (err) {
        // Never let a bug here break the informer (it would drop the event silently or stop listing).
        this.#o.log.error({ err, resource, object: objectKey(obj) }, 'Kubernetes event not handled')
      }
    }
    listWatch.on('add', (o) => on(o, false))
    listWatch.on('update', (o) => on(o, false))
    listWatch.on('delete', (o) => on(o, true))
    listWatch.on('error', (err) => this.#failed(informer, err))
    return informer
  }

  /** (Re)starts one informer: it lists if it has no resourceVersion (first time, after 410), then watches. */
  async #run (informer: Informer<R>): Promise<void> {
    if (this.#abort.signal.aborted) return
    const errors = informer.errors
    try {
      await informer.listWatch.start()
    } catch (err) {
      this.#failed(informer, err)
      return
    }
    if (informer.errors === errors) informer.upSince = Date.now()
  }

  /** client-node stops an informer on any error but 410 and client timeouts; restart it after a backoff. */
  #failed (informer: Informer<R>, err: unknown): void {
    informer.errors++
    if (this.#abort.signal.aborted) return
    this.#o.onError?.(informer.resource)
    const delay = this.#restartDelay(informer)
    const e = err as { statusCode?: number, code?: unknown, message?: string, cause?: { message?: string } }
    this.#o.log.warn({ resource: informer.resource, path: informer.path, status: e?.statusCode, code: e?.code, cause: e?.cause?.message, attempt: informer.failures, retryInMs: delay }, `Kubernetes list/watch of ${informer.resource} failed: ${e?.message ?? String(err)}; retrying`)
    clearTimeout(informer.restartTimer)
    informer.restartTimer = setTimeout(() => { informer.restartTimer = undefined; void this.#run(informer) }, delay)
  }

  /** Counts this failure and says how long to wait before the next start. */
  #restartDelay (informer: Informer<R>): number {
    const { baseMs, maxMs } = this.#o.backoff ?? DEFAULT_BACKOFF
    // A watch that held for a while earns a fresh start; one that keeps failing backs off further.
    if (informer.upSince !== undefined && Date.now() - informer.upSince >= maxMs) informer.failures = 0
    informer.upSince = undefined
    return backoffMs(++informer.failures, baseMs, maxMs)
  }

  /** The informer's list: every page, malformed items left out (and reported), the rest slimmed. */
  async #list (informer: Informer<R>): Promise<KubernetesListObject<KubernetesObject>> {
    const slim = this.#slim[informer.resource]
    const items: KubernetesObject[] = []
    const resourceVersion = await listAllPages(this.#o.kubeConfig, informer.path, this.#o.pageSize ?? DEFAULT_PAGE_SIZE, this.#abort.signal, (item) => {
      if (objectKey(item) === undefined) this.#malformed(informer.resource, item)
      else items.push(slim === undefined ? item as KubernetesObject : slim(item as KubernetesObject))
    }, informer.selectors)
    // The informer adds the items in the microtask after this resolves; the next macrotask sees them.
    setImmediate(() => this.#listedOnce(informer))
    return { metadata: { resourceVersion }, items }
  }

  #listedOnce (informer: Informer<R>): void {
    informer.listed = true
    if (this.#informers.every((i) => i.listed)) this.#whenListed?.resolve()
  }

  #malformed (resource: R, obj: unknown): void {
    this.#o.onError?.('malformed')
    const m = isJsonObject(obj) ? obj.metadata : undefined
    this.#o.log.warn({ resource, metadata: m }, `Kubernetes ${resource}: object left out: metadata.name: expected a name, got ${JSON.stringify(isJsonObject(m) ? m.name : m)}`)
  }
}

/** The Kubernetes source's informers: each of its resources in each namespace given (none: all namespaces). */
function sourceSpecs (namespaces: readonly string[] | undefined): Array<InformerSpec<KubeResource>> {
  const each = namespaces === undefined || namespaces.length === 0 ? [undefined] : namespaces
  return RESOURCES.flatMap((resource) => each.map((namespace) => ({ resource, namespace })))
}

/** The API path of a resource's list and watch, in one namespace or (undefined) all, or of a cluster-scoped one. */
function resourcePath (resource: InformedResource, namespace: string | undefined): string {
  return `${API_PREFIX[resource]}${namespace === undefined ? '' : `/namespaces/${encodeURIComponent(namespace)}`}/${resource}`
}

/**
 * The informer's wait before it watches again, at most REWATCH_MAX_DELAY_MS and over when the source stops:
 * client-node waits 1 s, 2 s ... 30 s before re-watching after streams that ended with no event in between,
 * and changes made meanwhile would reach the catalog that late. Failures back off in #restartDelay instead.
 */
function rewatchDelay (signal: AbortSignal): (ms: number) => Promise<void> {
  return (ms) => new Promise((resolve) => {
    const done = (): void => { clearTimeout(t); signal.removeEventListener('abort', done); resolve() }
    const t = setTimeout(done, Math.min(ms, REWATCH_MAX_DELAY_MS))
    signal.addEventListener('abort', done, { once: true })
  })
}

/** client-node's Watch, asking for bookmarks; drops objects without a name (they would break the informer's cache). */
class InformerWatch extends Watch {
  readonly #signal: AbortSignal
  readonly #slim: ObjectSlimmer | undefined
  readonly #malformed: (obj: unknown) => void

  constructor (config: KubeConfig, signal: AbortSignal, slim: ObjectSlimmer | undefined, malformed: (obj: unknown) => void) {
    super(config)
    this.#signal = signal
    this.#slim = slim
    this.#malformed = malformed
  }

  override async watch (path: string, query: Parameters<Watch['watch']>[1], callback: Parameters<Watch['watch']>[2], done: Parameters<Watch['watch']>[3]): Promise<AbortController> {
    // The informer can reach here after stop() (its list or delay was under way): watch nothing.
    if (this.#signal.aborted) return new AbortController()
    const each: typeof callback = (phase, obj, raw) => {
      if (this.#signal.aborted) return
      if (phase === 'ADDED' || phase === 'MODIFIED' || phase === 'DELETED') {
        if (objectKey(obj) === undefined) { this.#malformed(obj); return }
        if (this.#slim !== undefined) obj = this.#slim(obj as KubernetesObject)
      }
      callback(phase, obj, raw)
    }
    // stop() while the request is in flight: the informer has no controller to abort yet, so abort it here.
    let controller: AbortController | undefined
    const onAbort = (): void => controller?.abort()
    this.#signal.addEventListener('abort', onAbort, { once: true })
    const finish: typeof done = (err) => { this.#signal.removeEventListener('abort', onAbort); done(err) }
    try {
      controller = await super.watch(path, { ...query, allowWatchBookmarks: true }, each, finish)
      if (this.#signal.aborted) controller.abort()
      return controller
    } catch (err) {
      this.#signal.removeEventListener('abort', onAbort)
      // Thrown before the request (no cluster, credentials): report it like any failed watch.
      done(err)
      return new AbortController()
    }
  }
}
