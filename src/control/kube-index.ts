// The Kubernetes source's index: the Services, EndpointSlices and Pods seen, and the catalog entries each Service produced.
import type { KubernetesObject, V1EndpointSlice, V1Pod, V1Service } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import type { AnnotationWarning } from '../resilience/annotations.ts'
import type { Service } from '../mesh/service.ts'
import type { Catalog } from './catalog.ts'
import type { KubeResource, KubeSourceErrorKind } from './kube-informer.ts'
import { isJsonObject } from './kube-list.ts'
import { objectKey, podAnnotationsRead, podAnnotationWarnings, slicePodKeys, sliceServiceKey, servicesFromKube } from './kube-objects.ts'

/** The kinds of object whose remora.dev/* annotations the source reads. */
export type AnnotatedKind = 'Service' | 'Pod'

export interface KubeIndexOptions {
  readonly trustDomain: string
  /** The sidecar inbound port endpoints are reached on. */
  readonly inboundPort: number
  readonly log: Logger
  /** Called once per new problem with an object (for the source-errors metric). */
  readonly onError?: (kind: KubeSourceErrorKind) => void
  /**
   * An object started (+1) or stopped (-1: annotation removed, object deleted) carrying an annotation
   * that has no effect yet (for the gauge of such objects). Each start is also logged, once.
   */
  readonly onAnnotationWithoutEffect?: (kind: AnnotatedKind, annotation: string, delta: 1 | -1) => void
}

/**
 * Only what the source reads from a pod (its service account, and the remora.dev/* annotations that
 * have no effect yet, to warn about them), so 10,000 pods stay small in memory.
 */
export function slimPod (o: KubernetesObject): KubernetesObject {
  const p = o as V1Pod
  const m = p.metadata ?? {}
  const annotations = podAnnotationsRead(p)
  return {
    kind: 'Pod',
    metadata: { name: m.name, namespace: m.namespace, resourceVersion: m.resourceVersion, uid: m.uid, ...(annotations !== undefined && { annotations }) },
    spec: isJsonObject(p.spec) ? { serviceAccountName: p.spec.serviceAccountName } : p.spec,
    status: isJsonObject(p.status) ? { podIP: p.status.podIP } : undefined,
  } as KubernetesObject
}

/** The one field of a pod its Services' entries depend on: its identity comes from it. */
const serviceAccountOf = (p: V1Pod): unknown => isJsonObject(p.spec) ? p.spec.serviceAccountName : p.spec

/**
 * What the informers have seen, indexed by Service (`ns/name`): a change to a Service, one of its slices or one
 * of their pods recomputes that Service's catalog entries, once per burst of changes. Before `publishAll` it
 * only collects; after it, it keeps the catalog up to date.
 */
export class KubeIndex {
  readonly #o: KubeIndexOptions
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
  #stopped = false
  #flush?: NodeJS.Immediate

  constructor (options: KubeIndexOptions) {
    this.#o = options
  }

  get serviceCount (): number { return this.#services.size }

  /** An object an informer saw added or changed (`deleted` false), or deleted. */
  record (resource: KubeResource, obj: KubernetesObject, deleted: boolean): void {
    const key = objectKey(obj)
    if (key === undefined) return
    if (resource === 'services') this.#indexService(key, deleted ? undefined : obj as V1Service)
    else if (resource === 'endpointslices') this.#indexSlice(key, deleted ? undefined : obj as V1EndpointSlice)
    else this.#indexPod(key, deleted ? undefined : obj as V1Pod)
  }

  /** The first full view: every Service's entries into `catalog` at once; from now on each change follows. */
  publishAll (catalog: Catalog, source: string): void {
    const services: Service[] = []
    for (const key of this.#services.keys()) services.push(...this.#compute(key))
    this.#dirty.clear()
    this.#catalog = catalog
    catalog.replace(services, source)
    this.#synced = true
  }

  /** No more catalog updates, not even the one already scheduled. */
  stop (): void {
    this.#stopped = true
    if (this.#flush !== undefined) clearImmediate(this.#flush)
  }

  #indexService (key: string, service: V1Service | undefined): void {
    if (service === undefined) this.#services.delete(key)
    else this.#services.set(key, service)
    this.#touch(key)
  }

  #indexSlice (key: string, slice: V1EndpointSlice | undefined): void {
    this.#unindexSlice(key)
    const owner = slice === undefined ? undefined : sliceServiceKey(slice)
    if (slice === undefined || owner === undefined) return
    let bySlice = this.#slices.get(owner)
    if (bySlice === undefined) this.#slices.set(owner, bySlice = new Map())
    bySlice.set(key, slice)
    this.#sliceOwner.set(key, owner)
    this.#refPods(slice, owner, +1)
    this.#touch(owner)
  }

  /** Forgets the slice as it was last seen (its Service may have changed since, or it is gone). */
  #unindexSlice (key: string): void {
    const oldOwner = this.#sliceOwner.get(key)
    if (oldOwner === undefined) return
    const old = this.#slices.get(oldOwner)?.get(key)
    this.#refPods(old, oldOwner, -1)
    this.#slices.get(oldOwner)?.delete(key)
    if (this.#slices.get(oldOwner)?.size === 0) this.#slices.delete(oldOwner)
    this.#sliceOwner.delete(key)
    this.#touch(oldOwner)
  }

  #indexPod (key: string, pod: V1Pod | undefined): void {
    const old = this.#pods.get(key)
    if (pod === undefined) this.#pods.delete(key)
    else this.#pods.set(key, pod)
    this.#noteWithoutEffect('Pod', key, pod === undefined ? [] : podAnnotationWarnings(pod))
    // Only the service account matters; status churn (probes, phases) recomputes nothing.
    if (old !== undefined && pod !== undefined && serviceAccountOf(old) === serviceAccountOf(pod)) return
    for (const svc of this.#podRefs.get(key)?.keys() ?? []) this.#touch(svc)
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
    if (!this.#synced || this.#flush !== undefined || this.#stopped) return
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
    this.#noteProblems(svc, problems)
    if (waitingFor.length > 0) this.#o.log.debug({ service: svc, pods: waitingFor }, 'endpoints wait for their pods to be seen')
    const keys = new Set(services.map((s) => s.key))
    if (keys.size > 0) this.#keys.set(svc, keys)
    else this.#keys.delete(svc)
    return services
  }

  /** Logs and counts each problem of a Service once: the same problem on the next recompute says nothing new. */
  #noteProblems (svc: string, problems: readonly string[]): void {
    const before = this.#problems.get(svc)
    for (const p of problems) {
      if (before?.has(p) === true) continue
      this.#o.onError?.('malformed')
      this.#o.log.warn({ service: svc }, p)
    }
    if (problems.length > 0) this.#problems.set(svc, new Set(problems))
    else this.#problems.delete(svc)
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
