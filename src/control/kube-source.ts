// The control plane's Kubernetes source: Service, EndpointSlice and Pod informers → the catalog, per Service.
import { HttpMethod, ListWatch, RequestContext, Watch, type KubeConfig, type KubernetesListObject, type KubernetesObject, type V1EndpointSlice, type V1Pod, type V1Service } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import { fetch } from 'undici'
import type { AnnotationWarning } from '../resilience/annotations.ts'
import { backoffMs } from '../resilience/backoff.ts'
import type { Service } from '../mesh/service.ts'
import type { Catalog, CatalogSource } from './catalog.ts'
import { objectKey, podAnnotationsRead, podAnnotationWarnings, slicePodKeys, sliceServiceKey, servicesFromKube } from './kube-objects.ts'

export type KubeResource = 'services' | 'endpointslices' | 'pods'
/** What onError counts: a failed list or watch of a resource, or a malformed object. */
export type KubeSourceErrorKind = KubeResource | 'malformed'
/** The kinds of object whose remora.dev/* annotations the source reads. */
export type AnnotatedKind = 'Service' | 'Pod'

export interface KubernetesSourceOptions {
  readonly kubeConfig: KubeConfig
  readonly trustDomain: string
  /** The sidecar inbound port endpoints are reached on. */
  readonly inboundPort: number
  readonly log: Logger
  /** Watch only these namespaces (one informer per namespace and resource). Default: all. */
  readonly namespaces?: readonly string[]
  /** Called once per failed list/watch and once per new problem with an object (for the source-errors metric). */
  readonly onError?: (kind: KubeSourceErrorKind) => void
  /**
   * An object started (+1) or stopped (-1: annotation removed, object deleted) carrying an annotation
   * that has no effect yet (for the gauge of such objects). Each start is also logged, once.
   */
  readonly onAnnotationWithoutEffect?: (kind: AnnotatedKind, annotation: string, delta: 1 | -1) => void
  /** Restart delay after a failed list or watch: exponential with full jitter. Default 500 ms to 30 s. */
  readonly backoff?: { readonly baseMs: number, readonly maxMs: number }
  /** Items per list page. Default 500 (as client-go). */
  readonly pageSize?: number
}

const PREFIX: Record<KubeResource, string> = { services: '/api/v1', endpointslices: '/apis/discovery.k8s.io/v1', pods: '/api/v1' }
const LIST_TIMEOUT_MS = 60_000
const REWATCH_MAX_DELAY_MS = 250

interface Feed {
  readonly resource: KubeResource
  readonly path: string
  readonly informer: ListWatch<KubernetesObject>
  listed: boolean
  failures: number
  errors: number
  upSince?: number
  timer?: NodeJS.Timeout
}

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v)

/**
 * Only what the source reads from a pod (its service account, and the remora.dev/* annotations that
 * have no effect yet, to warn about them), so 10,000 pods stay small in memory.
 */
function slimPod (o: KubernetesObject): KubernetesObject {
  const p = o as V1Pod
  const m = p.metadata ?? {}
  const annotations = podAnnotationsRead(p)
  return {
    kind: 'Pod',
    metadata: { name: m.name, namespace: m.namespace, resourceVersion: m.resourceVersion, uid: m.uid, ...(annotations !== undefined && { annotations }) },
    spec: isObj(p.spec) ? { serviceAccountName: p.spec.serviceAccountName } : p.spec,
    status: isObj(p.status) ? { podIP: p.status.podIP } : undefined,
  } as KubernetesObject
}

export class KubernetesSource implements CatalogSource {
  readonly name = 'kubernetes'
  readonly #o: KubernetesSourceOptions
  readonly #feeds: Feed[] = []
  readonly #abort = new AbortController()
  readonly #services = new Map<string, V1Service>()
  /** Slices by the Service (`ns/name`) their label names, and each slice's Service. */
  readonly #slices = new Map<string, Map<string, V1EndpointSlice>>()
  readonly #sliceOwner = new Map<string, string>()
  readonly #pods = new Map<string, V1Pod>()
  /** Pod → Services whose slices point at it (count of slices), so a pod change recomputes only those. */
  readonly #podRefs = new Map<string, Map<string, number>>()
  /** Catalog keys each Service produced last time (a port that goes away is deleted). */
  readonly #keys = new Map<string, Set<string>>()
  readonly #problems = new Map<string, Set<string>>()
  /** Annotations without effect yet that each object (`Service ns/name`, `Pod ns/name`) was last seen with. */
  readonly #withoutEffect = new Map<string, Set<string>>()
  readonly #dirty = new Set<string>()
  #catalog?: Catalog
  #synced = false
  #flush?: NodeJS.Immediate
  #whenListed?: { resolve: () => void, reject: (err: Error) => void }

  constructor (options: KubernetesSourceOptions) {
    this.#o = options
    const namespaces = options.namespaces === undefined || options.namespaces.length === 0 ? [undefined] : options.namespaces
    for (const resource of ['services', 'endpointslices', 'pods'] as const) {
      for (const ns of namespaces) {
        const path = `${PREFIX[resource]}${ns === undefined ? '' : `/namespaces/${encodeURIComponent(ns)}`}/${resource}`
        this.#feeds.push(this.#feed(resource, path))
      }
    }
  }

  async start (catalog: Catalog): Promise<void> {
    this.#catalog = catalog
    catalog.source = this.name
    const listed = new Promise<void>((resolve, reject) => { this.#whenListed = { resolve, reject } })
    for (const f of this.#feeds) void this.#run(f)
    await listed
    // First full view: every Service at once, then the catalog may answer watches.
    const services: Service[] = []
    for (const key of this.#services.keys()) services.push(...this.#compute(key))
    this.#dirty.clear()
    catalog.replace(services, this.name)
    this.#synced = true
    catalog.markSynced()
    this.#o.log.info({ services: this.#services.size, entries: catalog.size }, 'Kubernetes source synced')
  }

  async stop (): Promise<void> {
    this.#abort.abort()
    if (this.#flush !== undefined) clearImmediate(this.#flush)
    for (const f of this.#feeds) clearTimeout(f.timer)
    await Promise.all(this.#feeds.map((f) => f.informer.stop()))
    this.#whenListed?.reject(new Error('Kubernetes source stopped before its first sync'))
  }

  #feed (resource: KubeResource, path: string): Feed {
    const signal = this.#abort.signal
    const watch = new SourceWatch(this.#o.kubeConfig, signal, resource === 'pods' ? slimPod : undefined, (what) => this.#malformed(resource, what))
    const list = (): Promise<KubernetesListObject<KubernetesObject>> => this.#list(feed, path)
    // What makeInformer builds, with a Watch that asks for bookmarks, and a shorter delay that ends on stop():
    // client-node waits 1 s, 2 s ... 30 s before re-watching after streams that ended with no event in
    // between; changes made meanwhile would reach the catalog that late. Failures back off in #failed.
    const delayFn = (ms: number): Promise<void> => new Promise((resolve) => {
      const done = (): void => { clearTimeout(t); signal.removeEventListener('abort', done); resolve() }
      const t = setTimeout(done, Math.min(ms, REWATCH_MAX_DELAY_MS))
      signal.addEventListener('abort', done, { once: true })
    })
    const informer = new ListWatch<KubernetesObject>(path, watch, list, false, undefined, undefined, { delayFn })
    const feed: Feed = { resource, path, informer, listed: false, failures: 0, errors: 0 }
    const on = (obj: KubernetesObject, deleted: boolean): void => {
      feed.failures = 0
      try {
        this.#onObject(resource, obj, deleted)
      } catch (err) {
        // Never let a bug here break the informer (it would drop the event silently or stop listing).
        this.#o.log.error({ err, resource, object: objectKey(obj) }, 'Kubernetes event not handled')
      }
    }
    informer.on('add', (o) => on(o, false))
    informer.on('update', (o) => on(o, false))
    informer.on('delete', (o) => on(o, true))
    informer.on('error', (err) => this.#failed(feed, err))
    return feed
  }

  /** (Re)starts one informer: it lists if it has no resourceVersion (first time, after 410), then watches. */
  async #run (f: Feed): Promise<void> {
    if (this.#abort.signal.aborted) return
    const errors = f.errors
    try {
      await f.informer.start()
    } catch (err) {
      this.#failed(f, err)
      return
    }
    if (f.errors === errors) f.upSince = Date.now()
  }

  /** client-node stops an informer on any error but 410 and client timeouts; restart it after a backoff. */
  #failed (f: Feed, err: unknown): void {
    f.errors++
    if (this.#abort.signal.aborted) return
    this.#o.onError?.(f.resource)
    const { baseMs, maxMs } = this.#o.backoff ?? { baseMs: 500, maxMs: 30_000 }
    // A watch that held for a while earns a fresh start; one that keeps failing backs off further.
    if (f.upSince !== undefined && Date.now() - f.upSince >= maxMs) f.failures = 0
    f.upSince = undefined
    const delay = backoffMs(++f.failures, baseMs, maxMs)
    const e = err as { statusCode?: number, code?: unknown, message?: string, cause?: { message?: string } }
    this.#o.log.warn({ resource: f.resource, path: f.path, status: e?.statusCode, code: e?.code, cause: e?.cause?.message, attempt: f.failures, retryInMs: delay }, `Kubernetes list/watch of ${f.resource} failed: ${e?.message ?? String(err)}; retrying`)
    clearTimeout(f.timer)
    f.timer = setTimeout(() => { f.timer = undefined; void this.#run(f) }, delay)
  }

  /** One raw list (all pages): plain objects like the watch's, and one malformed item cannot fail the list. */
  async #list (f: Feed, path: string): Promise<KubernetesListObject<KubernetesObject>> {
    const items: KubernetesObject[] = []
    let resourceVersion: string
    let cont: string | undefined
    do {
      const page = await listPage(this.#o.kubeConfig, path, this.#o.pageSize ?? 500, cont, this.#abort.signal)
      for (const item of page.items) {
        if (objectKey(item) === undefined) this.#malformed(f.resource, item)
        else items.push(f.resource === 'pods' ? slimPod(item as KubernetesObject) : item as KubernetesObject)
      }
      resourceVersion = page.resourceVersion
      cont = page.continue
    } while (cont !== undefined)
    // The informer adds the items in the microtask after this resolves; the next macrotask sees them.
    setImmediate(() => this.#listedOnce(f))
    return { metadata: { resourceVersion }, items }
  }

  #listedOnce (f: Feed): void {
    f.listed = true
    if (this.#feeds.every((x) => x.listed)) this.#whenListed?.resolve()
  }

  #malformed (resource: KubeResource, obj: unknown): void {
    this.#o.onError?.('malformed')
    const m = isObj(obj) ? obj.metadata : undefined
    this.#o.log.warn({ resource, metadata: m }, `Kubernetes ${resource}: object left out: metadata.name: expected a name, got ${JSON.stringify(isObj(m) ? m.name : m)}`)
  }

  #onObject (resource: KubeResource, obj: KubernetesObject, deleted: boolean): void {
    const key = objectKey(obj)
    if (key === undefined) return
    if (resource === 'services') {
      if (deleted) this.#services.delete(key)
      else this.#services.set(key, obj as V1Service)
      this.#touch(key)
    } else if (resource === 'endpointslices') {
      this.#indexSlice(key, deleted ? undefined : obj as V1EndpointSlice)
    } else {
      const old = this.#pods.get(key)
      if (deleted) this.#pods.delete(key)
      else this.#pods.set(key, obj as V1Pod)
      this.#noteWithoutEffect('Pod', key, deleted ? [] : podAnnotationWarnings(obj))
      // Only the service account matters; status churn (probes, phases) recomputes nothing.
      const sa = (p: V1Pod | undefined): unknown => p === undefined ? null : isObj(p.spec) ? p.spec.serviceAccountName : p.spec
      if (old !== undefined && !deleted && sa(old) === sa(obj as V1Pod)) return
      for (const svc of this.#podRefs.get(key)?.keys() ?? []) this.#touch(svc)
    }
  }

  #indexSlice (key: string, slice: V1EndpointSlice | undefined): void {
    const oldOwner = this.#sliceOwner.get(key)
    if (oldOwner !== undefined) {
      const old = this.#slices.get(oldOwner)?.get(key)
      this.#refPods(old, oldOwner, -1)
      this.#slices.get(oldOwner)?.delete(key)
      if (this.#slices.get(oldOwner)?.size === 0) this.#slices.delete(oldOwner)
      this.#sliceOwner.delete(key)
      this.#touch(oldOwner)
    }
    const owner = slice === undefined ? undefined : sliceServiceKey(slice)
    if (slice === undefined || owner === undefined) return
    let bySlice = this.#slices.get(owner)
    if (bySlice === undefined) this.#slices.set(owner, bySlice = new Map())
    bySlice.set(key, slice)
    this.#sliceOwner.set(key, owner)
    this.#refPods(slice, owner, +1)
    this.#touch(owner)
  }

  #refPods (slice: V1EndpointSlice | undefined, svc: string, delta: number): void {
    for (const pod of new Set(slicePodKeys(slice))) {
      let refs = this.#podRefs.get(pod)
      if (refs === undefined) this.#podRefs.set(pod, refs = new Map())
      const n = (refs.get(svc) ?? 0) + delta
      if (n > 0) refs.set(svc, n)
      else refs.delete(svc)
      if (refs.size === 0) this.#podRefs.delete(pod)
    }
  }

  /** Marks a Service for recompute; a burst of events (a relist, a rollout) is handled once, next turn. */
  #touch (svc: string): void {
    this.#dirty.add(svc)
    if (!this.#synced || this.#flush !== undefined || this.#abort.signal.aborted) return
    this.#flush = setImmediate(() => {
      this.#flush = undefined
      const dirty = [...this.#dirty]
      this.#dirty.clear()
      for (const key of dirty) {
        try {
          this.#apply(key)
        } catch (err) {
          this.#o.log.error({ err, service: key }, 'Kubernetes Service not applied to the catalog')
        }
      }
    })
  }

  #apply (svc: string): void {
    const catalog = this.#catalog as Catalog
    const before = this.#keys.get(svc) ?? []
    const services = this.#compute(svc)
    const keys = new Set(services.map((s) => s.key))
    for (const old of before) if (!keys.has(old)) catalog.delete(old)
    for (const s of services) catalog.set(s)
  }

  /** Converts one Service; logs each problem once (until it goes away), remembers its catalog keys. */
  #compute (svc: string): readonly Service[] {
    const service = this.#services.get(svc)
    const slices = this.#slices.get(svc)?.values() ?? []
    const { services, problems, warnings, waitingFor } = service === undefined
      ? { services: [], problems: [], warnings: [], waitingFor: [] }
      : servicesFromKube(service, slices, (ns, name) => this.#pods.get(`${ns}/${name}`), this.#o)
    this.#noteWithoutEffect('Service', svc, warnings)
    const before = this.#problems.get(svc)
    for (const p of problems) {
      if (before?.has(p) === true) continue
      this.#o.onError?.('malformed')
      this.#o.log.warn({ service: svc }, p)
    }
    if (problems.length > 0) this.#problems.set(svc, new Set(problems))
    else this.#problems.delete(svc)
    if (waitingFor.length > 0) this.#o.log.debug({ service: svc, pods: waitingFor }, 'endpoints wait for their pods to be seen')
    const keys = new Set(services.map((s) => s.key))
    if (keys.size > 0) this.#keys.set(svc, keys)
    else this.#keys.delete(svc)
    return services
  }

  /**
   * Logs each annotation without effect once per object, as problems are (a resync, relist or other
   * update of the same object says nothing new; removed and added again, it is logged again), and
   * reports every change of what the object carries to the gauge.
   */
  #noteWithoutEffect (kind: AnnotatedKind, key: string, warnings: readonly AnnotationWarning[]): void {
    const id = `${kind} ${key}`
    const before = this.#withoutEffect.get(id)
    const now = new Set<string>()
    for (const w of warnings) {
      now.add(w.annotation)
      if (before?.has(w.annotation) === true) continue
      this.#o.onAnnotationWithoutEffect?.(kind, w.annotation, 1)
      this.#o.log.warn({ [kind === 'Service' ? 'service' : 'pod']: key, annotation: w.annotation }, w.message)
    }
    for (const a of before ?? []) if (!now.has(a)) this.#o.onAnnotationWithoutEffect?.(kind, a, -1)
    if (now.size > 0) this.#withoutEffect.set(id, now)
    else this.#withoutEffect.delete(id)
  }
}

/** client-node's Watch, asking for bookmarks; drops objects without a name (they would break the informer's cache). */
class SourceWatch extends Watch {
  readonly #signal: AbortSignal
  readonly #transform: ((o: KubernetesObject) => KubernetesObject) | undefined
  readonly #malformed: (obj: unknown) => void

  constructor (config: KubeConfig, signal: AbortSignal, transform: ((o: KubernetesObject) => KubernetesObject) | undefined, malformed: (obj: unknown) => void) {
    super(config)
    this.#signal = signal
    this.#transform = transform
    this.#malformed = malformed
  }

  override async watch (path: string, query: Parameters<Watch['watch']>[1], callback: Parameters<Watch['watch']>[2], done: Parameters<Watch['watch']>[3]): Promise<AbortController> {
    // The informer can reach here after stop() (its list or delay was under way): watch nothing.
    if (this.#signal.aborted) return new AbortController()
    const each: typeof callback = (phase, obj, raw) => {
      if (this.#signal.aborted) return
      if (phase === 'ADDED' || phase === 'MODIFIED' || phase === 'DELETED') {
        if (objectKey(obj) === undefined) { this.#malformed(obj); return }
        if (this.#transform !== undefined) obj = this.#transform(obj as KubernetesObject)
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

interface Page { items: unknown[], resourceVersion: string, continue?: string }

async function listPage (kc: KubeConfig, path: string, limit: number, cont: string | undefined, signal: AbortSignal): Promise<Page> {
  const cluster = kc.getCurrentCluster()
  if (cluster === null) throw new Error('the kubeconfig has no current cluster')
  const url = new URL(cluster.server + path)
  url.searchParams.set('limit', String(limit))
  if (cont !== undefined) url.searchParams.set('continue', cont)
  const ctx = new RequestContext(url.toString(), HttpMethod.GET)
  await kc.applySecurityAuthentication(ctx)
  const res = await fetch(url, { headers: ctx.getHeaders(), dispatcher: ctx.getDispatcher(), signal: AbortSignal.any([signal, AbortSignal.timeout(LIST_TIMEOUT_MS)]) })
  const text = await res.text()
  let body: unknown
  try { body = JSON.parse(text) } catch { body = undefined }
  const b = isObj(body) ? body : {}
  if (res.status !== 200) {
    // statusCode as client-node's errors carry it: the informer relists on 410.
    throw Object.assign(new Error(`GET ${path}: ${res.status} ${typeof b.message === 'string' ? b.message : res.statusText}`), { statusCode: res.status })
  }
  if (!Array.isArray(b.items) && b.items !== null) throw new Error(`GET ${path}: expected a list with items, got ${text.slice(0, 80)}`)
  const meta = isObj(b.metadata) ? b.metadata : {}
  return {
    items: (b.items as unknown[] | null) ?? [],
    resourceVersion: typeof meta.resourceVersion === 'string' ? meta.resourceVersion : '',
    continue: typeof meta.continue === 'string' && meta.continue !== '' ? meta.continue : undefined,
  }
}
