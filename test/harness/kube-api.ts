// A fake Kubernetes API server for tests: Services, Pods, EndpointSlices, Namespaces, ConfigMaps, Secrets, Deployments
// and MutatingWebhookConfigurations listed, watched, read, created and replaced over the real wire protocol; TokenReviews
// and SelfSubjectAccessReviews created; /version configurable; pods' proxy subresource forwarded where a test says.
import { randomBytes, randomUUID } from 'node:crypto'
import { EventEmitter } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { isDeepStrictEqual } from 'node:util'
import { KubeConfig } from '@kubernetes/client-node'

export type Kind = 'Service' | 'Pod' | 'EndpointSlice' | 'Namespace' | 'ConfigMap' | 'Secret' | 'Deployment' | 'MutatingWebhookConfiguration'
export type Resource = 'services' | 'pods' | 'endpointslices' | 'namespaces' | 'configmaps' | 'secrets' | 'deployments' | 'mutatingwebhookconfigurations'
/** create is a POST to a collection, update a PUT to an object (replace), patch a PATCH to an object. */
export type Verb = 'list' | 'watch' | 'get' | 'create' | 'update' | 'patch' | 'discovery' | 'other'
export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR'

export interface ObjectMeta {
  name: string
  namespace?: string
  uid?: string
  resourceVersion?: string
  creationTimestamp?: string
  labels?: Record<string, string>
  annotations?: Record<string, string>
  [field: string]: unknown
}

/**
 * An object as stored and served. apply() checks only kind, metadata.name and metadata.namespace; a create or
 * replace through the API also checks what the real server checks first (kind, names, namespace, resourceVersion).
 */
export interface KubeObject {
  apiVersion?: string
  kind: Kind
  metadata: ObjectMeta
  [field: string]: unknown
}

export interface FakeKubeApiOptions {
  /** Bearer token every request must carry (kubeConfig()'s user sends it); others get 401. Default 'fake-token'. */
  token?: string
  /** Also send a BOOKMARK this often to watches that asked for them (allowWatchBookmarks=true). 0 (default): only on bookmark(). */
  bookmarkIntervalMs?: number
  /** End a watch after this long when the client sent no timeoutSeconds (the real server picks 30-60 min). 0 (default): never. */
  watchTimeoutMs?: number
}

export interface RequestRecord {
  readonly method: string
  /** Path and query as sent. */
  readonly url: string
  readonly query: Readonly<Record<string, string>>
  readonly verb: Verb
  readonly resource?: Resource
  readonly namespace?: string
  readonly name?: string
  /** HTTP status answered (0 while a held watch waits). A watch answered with a 410 ERROR event has 200 and `expired`. */
  status: number
  expired?: boolean
}

export interface FailureMatch { verb?: Verb; resource?: Resource }

/** What /version answers (the real server's fields). */
export interface VersionInfo { major: string; minor: string; gitVersion: string; [field: string]: string }

/** A SelfSubjectAccessReview's spec.resourceAttributes, as client-node sends them. */
export interface AccessAttributes { verb?: string; group?: string; resource?: string; subresource?: string; namespace?: string; name?: string }

interface ResourceInfo { readonly kind: Kind; readonly apiVersion: string; readonly prefix: string; readonly singular: string; readonly namespaced: boolean }

const RESOURCES: Record<Resource, ResourceInfo> = {
  services: { kind: 'Service', apiVersion: 'v1', prefix: '/api/v1', singular: 'service', namespaced: true },
  pods: { kind: 'Pod', apiVersion: 'v1', prefix: '/api/v1', singular: 'pod', namespaced: true },
  endpointslices: { kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1', prefix: '/apis/discovery.k8s.io/v1', singular: 'endpointslice', namespaced: true },
  namespaces: { kind: 'Namespace', apiVersion: 'v1', prefix: '/api/v1', singular: 'namespace', namespaced: false },
  configmaps: { kind: 'ConfigMap', apiVersion: 'v1', prefix: '/api/v1', singular: 'configmap', namespaced: true },
  secrets: { kind: 'Secret', apiVersion: 'v1', prefix: '/api/v1', singular: 'secret', namespaced: true },
  deployments: { kind: 'Deployment', apiVersion: 'apps/v1', prefix: '/apis/apps/v1', singular: 'deployment', namespaced: true },
  mutatingwebhookconfigurations: { kind: 'MutatingWebhookConfiguration', apiVersion: 'admissionregistration.k8s.io/v1', prefix: '/apis/admissionregistration.k8s.io/v1', singular: 'mutatingwebhookconfiguration', namespaced: false },
}
const RESOURCE_OF_KIND: Record<Kind, Resource> = { Service: 'services', Pod: 'pods', EndpointSlice: 'endpointslices', Namespace: 'namespaces', ConfigMap: 'configmaps', Secret: 'secrets', Deployment: 'deployments', MutatingWebhookConfiguration: 'mutatingwebhookconfigurations' }
/** What apply() takes. Secrets go in with putSecret (which base64-encodes their values) or through the API. */
const APPLIED_KINDS: readonly Kind[] = ['Service', 'Pod', 'EndpointSlice', 'Namespace', 'ConfigMap', 'Deployment', 'MutatingWebhookConfiguration']
const isResource = (s: string): s is Resource => Object.hasOwn(RESOURCES, s)

interface HistoryEvent {
  readonly rv: number
  readonly resource: Resource
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED'
  /** The new state; for DELETED the last state stamped with the delete's resourceVersion. */
  readonly object: KubeObject
  readonly prev?: KubeObject
}

interface Watcher {
  readonly resource: Resource
  readonly filter: (o: KubeObject) => boolean
  readonly bookmarks: boolean
  /** Only events after this resourceVersion go out. */
  readonly fromRv: number
  readonly res: http.ServerResponse
}

interface Route { verb: Verb; resource?: Resource; namespace?: string; name?: string; body?: unknown }

/** A request parked by holdRequests(), with what serves it on release. */
interface HeldRequest { readonly rec: RequestRecord; readonly serve: () => void }

/** Thrown inside request handling; becomes a Status response. */
class StatusError extends Error {
  readonly code: number
  readonly reason: string
  readonly details: Record<string, unknown> | undefined
  constructor (code: number, reason: string, message: string, details?: Record<string, unknown>) {
    super(message)
    this.code = code
    this.reason = reason
    this.details = details
  }
}

const REASONS: Record<number, string> = {
  400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 405: 'MethodNotAllowed', 409: 'Conflict',
  410: 'Expired', 422: 'Invalid', 429: 'TooManyRequests', 500: 'InternalError', 503: 'ServiceUnavailable', 504: 'Timeout',
}

export function status (code: number, reason: string, message: string): Record<string, unknown> {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code }
}

const CONTINUE_EXPIRED = 'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.'

const keyOf = (o: KubeObject): string => `${o.metadata.namespace ?? ''}/${o.metadata.name}`
/** The store key of an object of `resource`: a cluster-scoped one (Namespace) has no namespace. */
const keyIn = (resource: Resource, namespace: string, name: string): string => `${RESOURCES[resource].namespaced ? namespace : ''}/${name}`
const clone = <T>(o: T): T => structuredClone(o)
const now = (): string => new Date().toISOString().replace(/\.\d+Z$/, 'Z')

/** The object's content without what the server assigns, to spot no-op updates (which the real server ignores). */
function content (o: KubeObject): unknown {
  const { resourceVersion: _rv, uid: _uid, creationTimestamp: _ct, ...meta } = o.metadata
  return { ...o, metadata: meta }
}

/**
 * What the server does to every object it stores: EndpointSlice `endpoints` and `ports` are not omitempty, so empty
 * lists come back null (a protobuf round trip); a Namespace gets its kubernetes.io/metadata.name label, its
 * finalizer and phase; a Secret's stringData is merged into data (base64) and its type defaults to Opaque.
 */
function normalize (o: KubeObject): void {
  if (o.kind === 'EndpointSlice') {
    for (const field of ['endpoints', 'ports']) {
      const v = o[field]
      if (v === undefined || (Array.isArray(v) && v.length === 0)) o[field] = null
    }
  } else if (o.kind === 'Namespace') {
    o.metadata.labels = { ...o.metadata.labels, 'kubernetes.io/metadata.name': o.metadata.name }
    o.spec ??= { finalizers: ['kubernetes'] }
    o.status ??= { phase: 'Active' }
  } else if (o.kind === 'Secret') {
    const strings = o.stringData as Record<string, string> | undefined
    if (strings !== undefined) {
      o.data = { ...(o.data as Record<string, string> | undefined), ...Object.fromEntries(Object.entries(strings).map(([k, v]) => [k, Buffer.from(v).toString('base64')])) }
      delete o.stringData
    }
    o.type ??= 'Opaque'
  }
}

/** A label selector (`a=b,c!=d,e in (x,y),f notin (z),g,!h`) as a predicate; throws StatusError 400 if it does not parse. */
export function parseLabelSelector (selector: string): (labels: Record<string, string> | undefined) => boolean {
  const parts = selector.split(/,(?![^(]*\))/).map((p) => p.trim()).filter((p) => p !== '')
  const tests = parts.map((part): (l: Record<string, string>) => boolean => {
    const key = '([A-Za-z0-9][-A-Za-z0-9_./]*)'
    let m = new RegExp(`^${key}\\s+(in|notin)\\s+\\(([^)]*)\\)$`).exec(part)
    if (m !== null) {
      const [, k, op, list] = m
      const values = new Set(list.split(',').map((v) => v.trim()))
      return op === 'in' ? (l) => Object.hasOwn(l, k) && values.has(l[k]) : (l) => !Object.hasOwn(l, k) || !values.has(l[k])
    }
    m = new RegExp(`^${key}\\s*(==|=|!=)\\s*([-A-Za-z0-9_.]*)$`).exec(part)
    if (m !== null) {
      const [, k, op, v] = m
      return op === '!=' ? (l) => l[k] !== v : (l) => Object.hasOwn(l, k) && l[k] === v
    }
    m = new RegExp(`^(!?)\\s*${key}$`).exec(part)
    if (m !== null) {
      const [, not, k] = m
      return not === '!' ? (l) => !Object.hasOwn(l, k) : (l) => Object.hasOwn(l, k)
    }
    throw new StatusError(400, 'BadRequest', `unable to parse requirement: ${JSON.stringify(part)}`)
  })
  return (labels) => tests.every((test) => test(labels ?? {}))
}

/** `metadata.name` / `metadata.namespace` with =, ==, != (what every resource supports); others are 400. */
function parseFieldSelector (selector: string): (o: KubeObject) => boolean {
  const tests = selector.split(',').filter((p) => p.trim() !== '').map((part): (o: KubeObject) => boolean => {
    const m = /^\s*(metadata\.name|metadata\.namespace)\s*(==|=|!=)\s*([^,]*?)\s*$/.exec(part)
    if (m === null) throw new StatusError(400, 'BadRequest', `field label not supported: ${part.split(/!?=/)[0].trim()}`)
    const [, field, op, v] = m
    const get = (o: KubeObject): string => (field === 'metadata.name' ? o.metadata.name : o.metadata.namespace ?? '')
    return op === '!=' ? (o) => get(o) !== v : (o) => get(o) === v
  })
  return (o) => tests.every((test) => test(o))
}

/** RFC 7386: members of `patch` set (null deletes) recursively; anything else replaces. */
function mergePatch (target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch
  const out: Record<string, unknown> = target !== null && typeof target === 'object' && !Array.isArray(target) ? target as Record<string, unknown> : {}
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k]
    else out[k] = mergePatch(out[k], v)
  }
  return out
}

/** RFC 6902 on `doc` (changed in place; returned): a failing operation is a 422, as the real server answers. */
function jsonPatch (doc: unknown, ops: unknown[]): unknown {
  const fail = (message: string): never => { throw new StatusError(422, 'Invalid', message) }
  const segments = (path: unknown): string[] => {
    if (typeof path !== 'string' || (path !== '' && !path.startsWith('/'))) return fail(`invalid JSON Pointer ${JSON.stringify(path)}`)
    return path === '' ? [] : path.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
  }
  const parentOf = (root: unknown, segs: string[], path: string): { parent: Record<string, unknown> | unknown[], key: string } => {
    let node = root
    for (const s of segs.slice(0, -1)) {
      node = Array.isArray(node) ? node[Number(s)] : node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[s] : undefined
      if (node === undefined || node === null || typeof node !== 'object') return fail(`doc is missing path: ${path}`)
    }
    return { parent: node as Record<string, unknown> | unknown[], key: segs[segs.length - 1] }
  }
  const get = (root: unknown, path: string): unknown => {
    let node = root
    for (const s of segments(path)) {
      node = Array.isArray(node) ? node[Number(s)] : node !== null && typeof node === 'object' && Object.hasOwn(node, s) ? (node as Record<string, unknown>)[s] : undefined
      if (node === undefined) return fail(`doc is missing path: ${path}`)
    }
    return node
  }
  const remove = (root: unknown, path: string): unknown => {
    const { parent, key } = parentOf(root, segments(path), path)
    if (Array.isArray(parent)) {
      const i = Number(key)
      if (!Number.isInteger(i) || i < 0 || i >= parent.length) return fail(`Unable to remove nonexistent key: ${key}: missing value`)
      return parent.splice(i, 1)[0]
    }
    if (!Object.hasOwn(parent, key)) return fail(`Unable to remove nonexistent key: ${key}: missing value`)
    const old = parent[key]
    delete parent[key]
    return old
  }
  const add = (root: unknown, path: string, value: unknown): unknown => {
    const segs = segments(path)
    if (segs.length === 0) return clone(value)
    const { parent, key } = parentOf(root, segs, path)
    if (Array.isArray(parent)) {
      const i = key === '-' ? parent.length : Number(key)
      if (!Number.isInteger(i) || i < 0 || i > parent.length) return fail(`add operation does not apply: doc is missing path: ${path}`)
      parent.splice(i, 0, clone(value))
    } else parent[key] = clone(value)
    return root
  }
  let root = doc
  for (const raw of ops) {
    const op = (raw ?? {}) as { op?: unknown, path?: unknown, from?: unknown, value?: unknown }
    const path = typeof op.path === 'string' ? op.path : fail('operation has no path')
    switch (op.op) {
      case 'add': root = add(root, path, op.value); break
      case 'remove': remove(root, path); break
      case 'replace': get(root, path); if (path === '') root = clone(op.value); else { remove(root, path); root = add(root, path, op.value) } break
      case 'test': if (!isDeepStrictEqual(get(root, path), op.value)) fail(`testing value ${path} failed: test failed`); break
      case 'copy': root = add(root, path, get(root, String(op.from))); break
      case 'move': { const v = remove(root, String(op.from)); root = add(root, path, v); break }
      default: fail(`Unexpected kind: ${String(op.op)}`)
    }
  }
  return root
}

/** Whether a request is one a FailureMatch (or holdRequests) names. */
function matches (m: FailureMatch, rec: RequestRecord): boolean {
  return (m.verb ?? rec.verb) === rec.verb && (m.resource ?? rec.resource) === rec.resource
}

/** 404 for an object that is not there, as the server words it. */
function notFound (resource: Resource, name: string): StatusError {
  return new StatusError(404, 'NotFound', `${resource} ${JSON.stringify(name)} not found`, { name, kind: resource })
}

function parseRv (value: string, what = 'resourceVersion'): number {
  if (!/^\d+$/.test(value)) throw new StatusError(400, 'BadRequest', `${what}: Invalid value: ${JSON.stringify(value)}: strconv.ParseUint: parsing ${JSON.stringify(value)}: invalid syntax`)
  return Number(value)
}

/** What a path names: a collection (verb list; create with POST) or one object (verb get; update with PUT). */
function route (pathname: string): Route {
  const discovery = discoveryBody(pathname)
  if (discovery !== undefined) return { verb: 'discovery', body: discovery }
  const m = /^(\/api\/v1|\/apis\/[^/]+\/v1)((?:\/[^/]+){1,4})$/.exec(pathname)
  if (m === null) return { verb: 'other' }
  const prefix = m[1]
  const parts = m[2].slice(1).split('/').map((p) => decodeURIComponent(p))
  // /namespaces/<ns>/<resource>[/<name>] is namespaced; /<resource>[/<name>] is every namespace, or cluster-scoped.
  const [namespace, resource, name] = parts.length >= 3 && parts[0] === 'namespaces'
    ? [parts[1], parts[2], parts[3]]
    : parts.length <= 2 ? [undefined, parts[0], parts[1]] : [undefined, '', undefined]
  if (!isResource(resource) || RESOURCES[resource].prefix !== prefix) return { verb: 'other' }
  const info = RESOURCES[resource]
  if (!info.namespaced && namespace !== undefined) return { verb: 'other' }
  if (info.namespaced && name !== undefined && namespace === undefined) return { verb: 'other' }
  return { verb: name === undefined ? 'list' : 'get', resource, namespace, name }
}

/** The API groups served (besides the core group), each at v1. */
const GROUPS = [...new Set(Object.values(RESOURCES).map((r) => r.apiVersion).filter((v) => v.includes('/')).map((v) => v.split('/')[0]))]

function discoveryBody (pathname: string): unknown {
  const groupOf = (name: string): Record<string, unknown> => ({ name, versions: [{ groupVersion: `${name}/v1`, version: 'v1' }], preferredVersion: { groupVersion: `${name}/v1`, version: 'v1' } })
  const resources = (prefix: string, groupVersion: string): unknown => ({
    kind: 'APIResourceList', apiVersion: 'v1', groupVersion,
    resources: Object.entries(RESOURCES).filter(([, r]) => r.prefix === prefix)
      .map(([name, r]) => ({ name, singularName: r.singular, namespaced: r.namespaced, kind: r.kind, verbs: ['create', 'get', 'list', 'patch', 'update', 'watch'] })),
  })
  const groupPath = /^\/apis\/([^/]+)(\/v1)?$/.exec(pathname)
  if (groupPath !== null && GROUPS.includes(groupPath[1])) {
    return groupPath[2] === undefined ? { kind: 'APIGroup', apiVersion: 'v1', ...groupOf(groupPath[1]) } : resources(`/apis/${groupPath[1]}/v1`, `${groupPath[1]}/v1`)
  }
  switch (pathname) {
    case '/version': return { major: '1', minor: '33', gitVersion: 'v1.33.0-remora-fake', platform: 'linux/amd64' }
    case '/api': return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [] }
    case '/apis': return { kind: 'APIGroupList', apiVersion: 'v1', groups: GROUPS.map(groupOf) }
    case '/api/v1': return resources('/api/v1', 'v1')
    default: return undefined
  }
}

export class FakeKubeApi extends EventEmitter {
  /** `http://127.0.0.1:PORT` */
  readonly url: string
  /** Every request, in arrival order. */
  readonly requests: RequestRecord[] = []
  private readonly server: http.Server
  private readonly token: string
  private readonly watchTimeoutMs: number
  private readonly stores: Record<Resource, Map<string, KubeObject>> = { services: new Map(), pods: new Map(), endpointslices: new Map(), namespaces: new Map(), configmaps: new Map(), secrets: new Map(), deployments: new Map(), mutatingwebhookconfigurations: new Map() }
  private history: HistoryEvent[] = []
  private readonly watches = new Set<Watcher>()
  private readonly failures: Array<{ count: number; code: number; match: FailureMatch }> = []
  private held: Array<() => void> | undefined
  private heldMatch: FailureMatch | undefined
  private heldRequestQueue: HeldRequest[] = []
  private readonly bookmarkTimer: NodeJS.Timeout | undefined
  private rv = 1
  private compactedRv = 1

  readonly #tokens = new Map<string, { username: string, audiences: string[] }>()
  #version: VersionInfo = { major: '1', minor: '33', gitVersion: 'v1.33.0-remora-fake', gitCommit: '0000000000000000000000000000000000000000', gitTreeState: 'clean', buildDate: '2025-04-23T00:00:00Z', goVersion: 'go1.24.2', compiler: 'gc', platform: 'linux/amd64' }
  /** SelfSubjectAccessReviews matching one of these are denied; every other one is allowed. */
  readonly #denied: AccessAttributes[] = []
  /** Every SelfSubjectAccessReview's attributes, in arrival order. */
  readonly accessReviews: AccessAttributes[] = []
  /** `namespace/name:port` → the base URL the pods/proxy subresource forwards to. */
  readonly #podProxies = new Map<string, string>()

  private constructor (server: http.Server, opts: FakeKubeApiOptions) {
    super()
    this.server = server
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    this.token = opts.token ?? 'fake-token'
    this.watchTimeoutMs = opts.watchTimeoutMs ?? 0
    if ((opts.bookmarkIntervalMs ?? 0) > 0) this.bookmarkTimer = setInterval(() => this.bookmark(), opts.bookmarkIntervalMs).unref()
    server.on('request', (req, res) => this.handle(req, res))
  }

  static async start (opts: FakeKubeApiOptions = {}): Promise<FakeKubeApi> {
    const server = http.createServer()
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve))
    return new FakeKubeApi(server, opts)
  }

  /** A KubeConfig whose current context points here, with a token user. */
  kubeConfig (): KubeConfig {
    const kc = new KubeConfig()
    kc.loadFromClusterAndUser({ name: 'fake', server: this.url, skipTLSVerify: true }, { name: 'fake-user', token: this.token })
    return kc
  }

  /** The current (latest) resourceVersion. */
  resourceVersion (): string { return String(this.rv) }

  /** Create or update by kind/namespace/name (ADDED or MODIFIED); an update that changes nothing is a no-op, as in the real server. */
  apply (obj: KubeObject): KubeObject { return this.applyRaw(obj) }

  /** Like apply, for deliberately malformed objects: nothing beyond kind, metadata.name and metadata.namespace is checked. */
  applyRaw (input: object): KubeObject {
    const obj = clone(input) as KubeObject
    if (typeof obj.kind !== 'string' || !APPLIED_KINDS.includes(obj.kind)) throw new Error(`kind must be ${APPLIED_KINDS.join(', ')}, got ${String(obj.kind)} (a Secret: putSecret)`)
    if (typeof obj.metadata?.name !== 'string' || obj.metadata.name === '') throw new Error('metadata.name is required')
    return this.write(obj)
  }

  /**
   * Stores `obj` (kind and name checked by the caller) as the server does: defaults, a new resourceVersion, the
   * uid and creationTimestamp kept from the object it replaces; an update that changes nothing is a no-op.
   */
  private write (obj: KubeObject): KubeObject {
    const resource = RESOURCE_OF_KIND[obj.kind]
    obj.apiVersion = RESOURCES[resource].apiVersion
    if (RESOURCES[resource].namespaced) obj.metadata.namespace ??= 'default'
    else delete obj.metadata.namespace
    normalize(obj)
    const store = this.store(resource)
    const prev = store.get(keyOf(obj))
    if (prev !== undefined && isDeepStrictEqual(content(prev), content(obj))) return clone(prev)
    const rv = ++this.rv
    Object.assign(obj.metadata, { uid: prev?.metadata.uid ?? randomUUID(), resourceVersion: String(rv), creationTimestamp: prev?.metadata.creationTimestamp ?? now() })
    store.set(keyOf(obj), obj)
    this.publish({ rv, resource, type: prev === undefined ? 'ADDED' : 'MODIFIED', object: obj, prev })
    return clone(obj)
  }

  /** Delete (DELETED carries the last state with the new resourceVersion); returns it, or undefined if absent. For a Namespace, `namespace` is ignored. */
  remove (kind: Kind, namespace: string, name: string): KubeObject | undefined {
    const resource = RESOURCE_OF_KIND[kind]
    const prev = this.store(resource).get(keyIn(resource, namespace, name))
    if (prev === undefined) return undefined
    const rv = ++this.rv
    const object = clone(prev)
    object.metadata.resourceVersion = String(rv)
    this.store(resource).delete(keyOf(prev))
    this.publish({ rv, resource, type: 'DELETED', object, prev })
    return clone(object)
  }

  /** An object as stored, or undefined. For a Namespace, `namespace` is ignored. */
  get (kind: Kind, namespace: string, name: string): KubeObject | undefined {
    const resource = RESOURCE_OF_KIND[kind]
    const o = this.store(resource).get(keyIn(resource, namespace, name))
    return o === undefined ? undefined : clone(o)
  }

  /** Every stored object of a kind (in one namespace, or all), sorted by namespace and name. */
  all (kind: Kind, namespace?: string): KubeObject[] {
    return [...this.store(RESOURCE_OF_KIND[kind]).values()].filter((o) => namespace === undefined || o.metadata.namespace === namespace)
      .sort((a, b) => (keyOf(a) < keyOf(b) ? -1 : 1)).map(clone)
  }

  /** Forget all history, like an etcd compaction: watches and lists from any older resourceVersion now get 410 Expired. */
  compact (): void {
    this.history = []
    this.compactedRv = this.rv
  }

  /** Send a BOOKMARK at the current resourceVersion to every watch that asked for bookmarks. */
  bookmark (): void {
    for (const w of this.watches) if (w.bookmarks) this.send(w.res, 'BOOKMARK', this.bookmarkObject(w.resource))
  }

  /**
   * End every open watch stream; returns how many. Default: a clean end of the chunked response (an apiserver
   * restarting gracefully, or its own watch timeout). `abrupt`: destroy the sockets mid-stream (a crash, a lost connection).
   */
  dropWatches (opts: { abrupt?: boolean } = {}): number {
    const dropped = [...this.watches]
    this.watches.clear()
    for (const w of dropped) {
      if (opts.abrupt === true) w.res.destroy()
      else w.res.end()
    }
    if (dropped.length > 0) this.activity()
    return dropped.length
  }

  /** Park new watch requests (no response yet) until releaseWatches(); they are then served against the state of that moment. */
  holdWatches (): void { this.held ??= [] }

  releaseWatches (): void {
    const held = this.held ?? []
    this.held = undefined
    for (const open of held) open()
  }

  /** Number of watch requests parked by holdWatches(). */
  heldWatches (): number { return this.held?.length ?? 0 }

  /**
   * Park the requests that match (not watches: see holdWatches), already authenticated and recorded with status 0,
   * until releaseRequests(), which serves them in arrival order against the state of that moment. For races: two
   * clients' creates of one object, held until both arrived, then one wins (201) and the other gets 409.
   */
  holdRequests (match: FailureMatch): void { this.heldMatch = match }

  releaseRequests (): void {
    const held = this.heldRequestQueue
    this.heldMatch = undefined
    this.heldRequestQueue = []
    for (const r of held) r.serve()
    if (held.length > 0) this.activity()
  }

  /** Number of requests parked by holdRequests(). */
  heldRequests (): number { return this.heldRequestQueue.length }

  /** Answer the next `n` matching requests with a Status of `code` (e.g. 500, 503, 429). */
  fail (n: number, code = 503, match: FailureMatch = {}): void {
    this.failures.push({ count: n, code, match })
  }

  /** Open watch streams, of one resource or all. */
  watchers (resource?: Resource): number {
    let n = 0
    for (const w of this.watches) if (resource === undefined || w.resource === resource) n++
    return n
  }

  /** How many requests of this verb (and resource) arrived. */
  count (verb: Verb, resource?: Resource): number {
    return this.requests.filter((r) => r.verb === verb && (resource === undefined || r.resource === resource)).length
  }

  /** Resolves once `predicate` holds, re-checking on every request and watch open/close; rejects after `timeoutMs`. */
  async waitFor (predicate: () => boolean, timeoutMs = 10_000): Promise<void> {
    if (predicate()) return
    await new Promise<void>((resolve, reject) => {
      const check = (): void => { if (predicate()) done(undefined) }
      const timer = setTimeout(() => done(new Error(`FakeKubeApi.waitFor: not true after ${timeoutMs} ms`)), timeoutMs)
      const done = (err: Error | undefined): void => {
        clearTimeout(timer)
        this.off('activity', check)
        if (err === undefined) resolve()
        else reject(err)
      }
      this.on('activity', check)
    })
  }

  /** End the watches, close the server and every connection. */
  async close (): Promise<void> {
    clearInterval(this.bookmarkTimer)
    this.held = undefined
    this.heldMatch = undefined
    this.heldRequestQueue = []
    this.dropWatches()
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()))
    this.server.closeAllConnections()
    await closed
  }

  private store (resource: Resource): Map<string, KubeObject> { return this.stores[resource] }

  private activity (): void { this.emit('activity') }

  private publish (ev: HistoryEvent): void {
    this.history.push(ev)
    for (const w of this.watches) if (w.resource === ev.resource) this.deliver(w, ev)
  }

  /** As the watch cache does: an object moving into or out of a watch's filter is ADDED or DELETED for that watch. */
  private deliver (w: Watcher, ev: HistoryEvent): void {
    if (ev.rv <= w.fromRv) return
    const was = ev.prev !== undefined && w.filter(ev.prev)
    const is = ev.type !== 'DELETED' && w.filter(ev.object)
    if (is) this.send(w.res, was ? 'MODIFIED' : 'ADDED', ev.object)
    else if (was) {
      const gone = ev.type === 'DELETED' ? ev.object : clone(ev.prev as KubeObject)
      gone.metadata.resourceVersion = String(ev.rv)
      this.send(w.res, 'DELETED', gone)
    }
  }

  private send (res: http.ServerResponse, type: WatchEventType, object: unknown): void {
    if (!res.writableEnded && !res.destroyed) res.write(JSON.stringify({ type, object }) + '\n')
  }

  private bookmarkObject (resource: Resource, annotations?: Record<string, string>): unknown {
    const { kind, apiVersion } = RESOURCES[resource]
    return { kind, apiVersion, metadata: { resourceVersion: String(this.rv), ...(annotations === undefined ? {} : { annotations }) } }
  }

  /** The objects of `resource` as they were at `rv` (which must not be older than the compaction), by undoing later history. */
  private snapshot (resource: Resource, rv: number): Map<string, KubeObject> {
    const state = new Map(this.store(resource))
    for (let i = this.history.length - 1; i >= 0 && this.history[i].rv > rv; i--) {
      const ev = this.history[i]
      if (ev.resource !== resource) continue
      if (ev.prev === undefined) state.delete(keyOf(ev.object))
      else state.set(keyOf(ev.prev), ev.prev)
    }
    return state
  }

  /** A service account token (as a projected volume would hold) that TokenReview accepts for `audiences`. */
  issueToken (namespace: string, serviceAccount: string, audiences: readonly string[] = ['remora']): string {
    const token = `fake-sa-token.${namespace}.${serviceAccount}.${randomBytes(12).toString('hex')}`
    this.#tokens.set(token, { username: `system:serviceaccount:${namespace}:${serviceAccount}`, audiences: [...audiences] })
    return token
  }

  /**
   * A Secret (type Opaque unless told), as if created: readable at /api/v1/namespaces/<ns>/secrets/<name>, where its
   * values are base64-encoded as served. Replaces one of that name. Returns it as stored.
   */
  putSecret (namespace: string, name: string, data: Record<string, string>, opts: { labels?: Record<string, string>; type?: string } = {}): KubeObject {
    return this.write({
      kind: 'Secret',
      metadata: { name, namespace, ...(opts.labels && { labels: opts.labels }) },
      type: opts.type ?? 'Opaque',
      data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
    })
  }

  /** A Secret's values, decoded; undefined if there is no such Secret. */
  secretData (namespace: string, name: string): Record<string, string> | undefined {
    const secret = this.get('Secret', namespace, name)
    if (secret === undefined) return undefined
    const data = (secret.data ?? {}) as Record<string, string>
    return Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]))
  }

  /** What /version answers from now on: `major`.`minor` (e.g. '1', '28'), gitVersion v<major>.<minor>.0 unless given. */
  setVersion (major: string, minor: string, gitVersion = `v${major}.${minor.replace(/\D+$/, '')}.0`): void {
    this.#version = { ...this.#version, major, minor, gitVersion }
  }

  /** SelfSubjectAccessReviews whose attributes match every field given here are answered allowed: false. */
  denyAccess (rule: AccessAttributes): void { this.#denied.push(rule) }

  /**
   * GET /api/v1/namespaces/<ns>/pods/<name>:<port>/proxy/<path> (the pods/proxy subresource) is forwarded to
   * `target` + /<path>, as the real server forwards it to the pod's IP; without a target it answers 503 as the
   * real server does when it cannot dial the pod.
   */
  proxyPod (namespace: string, name: string, port: number, target: string): void { this.#podProxies.set(`${namespace}/${name}:${port}`, target) }

  /** SelfSubjectAccessReview (authorization.k8s.io/v1, create), and the pods/proxy subresource. */
  private reviewOrPodProxy (req: http.IncomingMessage, res: http.ServerResponse, pathname: string): boolean {
    const proxy = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/:]+)(?::(\d+))?\/proxy(\/.*)?$/.exec(pathname)
    if (pathname !== '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews' && proxy === null) return false
    const rec: RequestRecord = { method: req.method ?? 'GET', url: req.url ?? '/', query: {}, verb: 'other', status: 0 }
    this.requests.push(rec)
    if (req.headers.authorization !== `Bearer ${this.token}`) { req.resume(); this.reply(res, rec, 401, status(401, 'Unauthorized', 'Unauthorized')); return true }
    if (proxy !== null) {
      req.resume()
      const [, ns, name, port = '80', path = '/'] = proxy
      const pod = this.store('pods').get(`${ns}/${name}`)
      if (pod === undefined) { this.reply(res, rec, 404, status(404, 'NotFound', `pods "${name}" not found`)); return true }
      const target = this.#podProxies.get(`${ns}/${name}:${port}`)
      const ip = (pod.status as { podIP?: string } | undefined)?.podIP ?? ''
      const unreachable = (): void => this.reply(res, rec, 503, status(503, 'ServiceUnavailable', `error trying to reach service: dial tcp ${ip}:${port}: connect: connection refused`))
      if (target === undefined) { unreachable(); return true }
      fetch(new URL(path.slice(1) + (req.url?.includes('?') === true ? req.url.slice(req.url.indexOf('?')) : ''), target.endsWith('/') ? target : target + '/'))
        .then(async (r) => {
          rec.status = r.status
          res.writeHead(r.status, { 'Content-Type': r.headers.get('content-type') ?? 'text/plain' }).end(Buffer.from(await r.arrayBuffer()))
        }, unreachable)
        .finally(() => this.activity())
      return true
    }
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (c: string) => { body += c })
    req.on('end', () => {
      if (req.method !== 'POST') return this.reply(res, rec, 405, status(405, 'MethodNotAllowed', 'selfsubjectaccessreviews can only be created'))
      let review: { spec?: { resourceAttributes?: AccessAttributes } }
      try { review = JSON.parse(body) as typeof review } catch { return this.reply(res, rec, 400, status(400, 'BadRequest', 'body is not JSON')) }
      const attrs = review.spec?.resourceAttributes
      if (attrs === undefined) return this.reply(res, rec, 422, status(422, 'Invalid', 'SelfSubjectAccessReview.authorization.k8s.io "" is invalid: spec.resourceAttributes: Invalid value: "null": exactly one of nonResourceAttributes or resourceAttributes must be specified'))
      this.accessReviews.push(attrs)
      const denied = this.#denied.some((rule) => Object.entries(rule).every(([k, v]) => (attrs as Record<string, unknown>)[k] === v))
      this.reply(res, rec, 201, {
        kind: 'SelfSubjectAccessReview',
        apiVersion: 'authorization.k8s.io/v1',
        metadata: { creationTimestamp: null },
        spec: review.spec,
        status: denied ? { allowed: false } : { allowed: true, reason: 'RBAC: allowed by ClusterRoleBinding "cluster-admin" of ClusterRole "cluster-admin" to User "fake-user"' },
      })
      this.activity()
    })
    return true
  }

  /** TokenReview (authentication.k8s.io/v1, create): checks the tokens issueToken gave out. */
  private special (req: http.IncomingMessage, res: http.ServerResponse, pathname: string): boolean {
    if (pathname !== '/apis/authentication.k8s.io/v1/tokenreviews') return false
    const rec: RequestRecord = { method: req.method ?? 'GET', url: req.url ?? '/', query: {}, verb: 'other', status: 0 }
    this.requests.push(rec)
    if (req.headers.authorization !== `Bearer ${this.token}`) { req.resume(); this.reply(res, rec, 401, status(401, 'Unauthorized', 'Unauthorized')); return true }
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (c: string) => { body += c })
    req.on('end', () => {
      if (req.method !== 'POST') return this.reply(res, rec, 405, status(405, 'MethodNotAllowed', 'tokenreviews can only be created'))
      let spec: { token?: string, audiences?: string[] }
      try { spec = (JSON.parse(body) as { spec?: typeof spec }).spec ?? {} } catch { return this.reply(res, rec, 400, status(400, 'BadRequest', 'body is not JSON')) }
      const known = spec.token === undefined ? undefined : this.#tokens.get(spec.token)
      const wanted = spec.audiences ?? []
      const audiences = known === undefined ? [] : wanted.length === 0 ? known.audiences : known.audiences.filter((a) => wanted.includes(a))
      const ok = known !== undefined && audiences.length > 0
      this.reply(res, rec, 201, {
        kind: 'TokenReview',
        apiVersion: 'authentication.k8s.io/v1',
        metadata: { creationTimestamp: null },
        spec,
        status: ok
          ? { authenticated: true, user: { username: known.username, groups: ['system:serviceaccounts', 'system:authenticated'] }, audiences }
          : { user: {}, error: known === undefined ? '[invalid bearer token, token lookup failed]' : 'token audiences are invalid for the target audiences' },
      })
      this.activity()
    })
    return true
  }

  private handle (req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://fake')
    if (this.special(req, res, url.pathname) || this.reviewOrPodProxy(req, res, url.pathname)) return
    const query = Object.fromEntries(url.searchParams)
    const r = route(url.pathname)
    const method = req.method ?? 'GET'
    const verb: Verb = r.verb === 'list' && method === 'GET' && (query.watch === 'true' || query.watch === '1')
      ? 'watch'
      : r.verb === 'list' && method === 'POST' ? 'create' : r.verb === 'get' && method === 'PUT' ? 'update' : r.verb === 'get' && method === 'PATCH' ? 'patch' : r.verb
    const rec: RequestRecord = { method, url: req.url ?? '/', query, verb, resource: r.resource, namespace: r.namespace, name: r.name, status: 0 }
    this.requests.push(rec)
    if (verb !== 'create' && verb !== 'update' && verb !== 'patch') {
      req.resume()
      this.serve(req, res, rec, r, query, undefined)
      return
    }
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (c: string) => { body += c })
    req.on('end', () => this.serve(req, res, rec, r, query, body))
  }

  /** Authenticates, parks the request if holdRequests() says so, else serves it now; a StatusError thrown becomes a Status response. */
  private serve (req: http.IncomingMessage, res: http.ServerResponse, rec: RequestRecord, r: Route, query: Record<string, string>, body: string | undefined): void {
    const answer = (): void => {
      try {
        this.serveNow(req, res, rec, r, query, body)
      } catch (err) {
        if (!(err instanceof StatusError)) throw err
        this.reply(res, rec, err.code, { ...status(err.code, err.reason, err.message), ...(err.details !== undefined && { details: err.details }) })
      }
    }
    const match = this.heldMatch
    if (req.headers.authorization === `Bearer ${this.token}` && rec.verb !== 'watch' && match !== undefined && matches(match, rec)) {
      this.heldRequestQueue.push({ rec, serve: answer })
    } else answer()
    this.activity()
  }

  private serveNow (req: http.IncomingMessage, res: http.ServerResponse, rec: RequestRecord, r: Route, query: Record<string, string>, body: string | undefined): void {
    if (req.headers.authorization !== `Bearer ${this.token}`) throw new StatusError(401, 'Unauthorized', 'Unauthorized')
    const failure = this.failures.find((f) => f.count > 0 && matches(f.match, rec))
    if (failure !== undefined) {
      failure.count--
      throw new StatusError(failure.code, REASONS[failure.code] ?? 'InternalError', `injected failure (${failure.code})`)
    }
    if (r.verb === 'discovery') return this.reply(res, rec, 200, rec.url.split('?')[0] === '/version' ? this.#version : r.body)
    if (r.resource === undefined) throw new StatusError(404, 'NotFound', 'the server could not find the requested resource')
    if (rec.verb === 'create') return this.create(res, rec, r.resource, r.namespace, body ?? '')
    if (rec.verb === 'update') return this.update(res, rec, r.resource, r.namespace ?? '', r.name as string, body ?? '')
    if (rec.verb === 'patch') return this.patch(res, rec, r.resource, r.namespace ?? '', r.name as string, body ?? '', req.headers['content-type'] ?? '')
    if (req.method !== 'GET') throw new StatusError(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource (${req.method})`)
    if (rec.verb === 'get') return this.getOne(res, rec, r.resource, r.namespace ?? '', r.name as string)
    const filter = this.filter(r.namespace, query)
    if (rec.verb === 'watch') return this.watch(res, rec, r.resource, filter, query)
    this.list(res, rec, r.resource, filter, query)
  }

  private reply (res: http.ServerResponse, rec: RequestRecord, code: number, body: unknown): void {
    rec.status = code
    res.writeHead(code, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private' }).end(JSON.stringify(body))
  }

  private getOne (res: http.ServerResponse, rec: RequestRecord, resource: Resource, namespace: string, name: string): void {
    const o = this.store(resource).get(keyIn(resource, namespace, name))
    if (o === undefined) throw notFound(resource, name)
    this.reply(res, rec, 200, o)
  }

  /** POST to a collection: 201 and the object as stored; 409 AlreadyExists if one of that name is there. */
  private create (res: http.ServerResponse, rec: RequestRecord, resource: Resource, namespace: string | undefined, body: string): void {
    const info = RESOURCES[resource]
    if (info.namespaced && namespace === undefined) throw new StatusError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource (POST)')
    const obj = this.objectIn(body, resource, namespace)
    const name = obj.metadata.name
    if (typeof name !== 'string' || name === '') {
      throw new StatusError(422, 'Invalid', `${info.kind} "" is invalid: metadata.name: Required value: name or generateName is required`)
    }
    if (namespace !== undefined) {
      const ns = this.store('namespaces').get(`/${namespace}`)
      if (ns === undefined) throw notFound('namespaces', namespace)
      if (ns.metadata.deletionTimestamp !== undefined || (ns.status as { phase?: string } | undefined)?.phase === 'Terminating') {
        throw new StatusError(403, 'Forbidden', `${resource} "${name}" is forbidden: unable to create new content in namespace ${namespace} because it is being terminated`)
      }
    }
    if (this.store(resource).has(keyIn(resource, namespace ?? '', name))) {
      throw new StatusError(409, 'AlreadyExists', `${resource} "${name}" already exists`, { name, kind: resource })
    }
    for (const field of ['resourceVersion', 'uid', 'creationTimestamp']) delete obj.metadata[field]
    this.reply(res, rec, 201, this.write(obj))
  }

  /**
   * PUT to an object (replace): 200 and the object as stored. 404 if it is not there (no create on update, as for
   * ConfigMaps and Secrets); 409 Conflict if the body carries a resourceVersion that is no longer the object's.
   * Without one, the update is unconditional (allowed for these resources).
   */
  private update (res: http.ServerResponse, rec: RequestRecord, resource: Resource, namespace: string, name: string, body: string): void {
    const obj = this.objectIn(body, resource, RESOURCES[resource].namespaced ? namespace : undefined)
    if (obj.metadata.name !== name) throw new StatusError(400, 'BadRequest', `the name of the object (${String(obj.metadata.name)}) does not match the name on the URL (${name})`)
    const prev = this.store(resource).get(keyIn(resource, namespace, name))
    if (prev === undefined) throw notFound(resource, name)
    const rv = obj.metadata.resourceVersion
    if (rv !== undefined && rv !== '') {
      parseRv(rv, 'metadata.resourceVersion')
      if (rv !== prev.metadata.resourceVersion) {
        throw new StatusError(409, 'Conflict', `Operation cannot be fulfilled on ${resource} "${name}": the object has been modified; please apply your changes to the latest version and try again`, { name, kind: resource })
      }
    }
    // The status of a Namespace (and its finalizers) change only through their subresources.
    if (resource === 'namespaces') Object.assign(obj, { spec: prev.spec, status: prev.status })
    this.reply(res, rec, 200, this.write(obj))
  }

  /**
   * PATCH to an object: a JSON Patch (application/json-patch+json, RFC 6902: add, remove, replace, test, copy, move)
   * or a JSON merge patch (application/merge-patch+json, RFC 7386); 200 and the object as stored. As the real server:
   * 404 if absent, 400 for a body that does not parse, 422 when an operation fails (a `test` that does not hold, a
   * path that is not there), 409 when the patched object carries a resourceVersion that is no longer the object's.
   * Strategic merge and server-side apply patches are not spoken here: 415.
   */
  private patch (res: http.ServerResponse, rec: RequestRecord, resource: Resource, namespace: string, name: string, body: string, contentType: string): void {
    const prev = this.store(resource).get(keyIn(resource, namespace, name))
    const type = contentType.split(';')[0].trim()
    if (type !== 'application/json-patch+json' && type !== 'application/merge-patch+json') {
      throw new StatusError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json (the stand-in speaks no ${type})`)
    }
    if (prev === undefined) throw notFound(resource, name)
    let doc: unknown
    try { doc = JSON.parse(body) } catch { throw new StatusError(400, 'BadRequest', 'the body of the request was in an unknown format') }
    let patched: unknown
    if (type === 'application/merge-patch+json') patched = mergePatch(clone(prev), doc)
    else {
      if (!Array.isArray(doc)) throw new StatusError(400, 'BadRequest', 'json: cannot unmarshal object into Go value of type jsonpatch.Patch')
      patched = jsonPatch(clone(prev), doc)
    }
    const obj = patched as KubeObject
    if (obj === null || typeof obj !== 'object' || typeof obj.metadata !== 'object' || obj.metadata === null) throw new StatusError(422, 'Invalid', 'the patched object has no metadata')
    if (obj.metadata.name !== name || obj.kind !== prev.kind || obj.apiVersion !== prev.apiVersion) throw new StatusError(422, 'Invalid', `${RESOURCES[resource].kind} ${JSON.stringify(name)} is invalid: the patch may not change kind, apiVersion or metadata.name`)
    const rv = obj.metadata.resourceVersion
    if (rv !== undefined && rv !== prev.metadata.resourceVersion) {
      throw new StatusError(409, 'Conflict', `Operation cannot be fulfilled on ${resource} "${name}": the object has been modified; please apply your changes to the latest version and try again`, { name, kind: resource })
    }
    this.reply(res, rec, 200, this.write(obj))
  }

  /** The object in a create or replace body, its kind, apiVersion and namespace checked against the URL's. */
  private objectIn (body: string, resource: Resource, namespace: string | undefined): KubeObject {
    const info = RESOURCES[resource]
    let obj: unknown
    try { obj = JSON.parse(body) } catch { throw new StatusError(400, 'BadRequest', 'the body of the request was in an unknown format') }
    if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw new StatusError(400, 'BadRequest', 'the body of the request is not an object')
    const o = obj as Partial<KubeObject>
    if (o.kind !== undefined && o.kind !== info.kind) throw new StatusError(400, 'BadRequest', `${String(o.kind)} in version "${String(o.apiVersion)}" cannot be handled as a ${info.kind}`)
    if (o.apiVersion !== undefined && o.apiVersion !== info.apiVersion) throw new StatusError(400, 'BadRequest', `the API version in the data (${String(o.apiVersion)}) does not match the expected API version (${info.apiVersion})`)
    const metadata = (o.metadata !== null && typeof o.metadata === 'object' ? o.metadata : {}) as ObjectMeta
    if (namespace !== undefined) {
      if (metadata.namespace !== undefined && metadata.namespace !== '' && metadata.namespace !== namespace) {
        throw new StatusError(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request')
      }
      metadata.namespace = namespace
    }
    return { ...o, kind: info.kind, metadata }
  }

  private filter (namespace: string | undefined, query: Record<string, string>): (o: KubeObject) => boolean {
    const labels = parseLabelSelector(query.labelSelector ?? '')
    const fields = parseFieldSelector(query.fieldSelector ?? '')
    return (o) => (namespace === undefined || o.metadata.namespace === namespace) && labels(o.metadata.labels) && fields(o)
  }

  private list (res: http.ServerResponse, rec: RequestRecord, resource: Resource, filter: (o: KubeObject) => boolean, query: Record<string, string>): void {
    const { rv, start } = this.listPoint(query)
    const limit = query.limit === undefined ? 0 : parseRv(query.limit, 'limit')
    const objects = rv === this.rv ? this.store(resource) : this.snapshot(resource, rv)
    const items = [...objects.values()].filter((o) => keyOf(o) > start && filter(o)).sort((a, b) => (keyOf(a) < keyOf(b) ? -1 : 1))
    const page = limit > 0 ? items.slice(0, limit) : items
    const metadata: Record<string, unknown> = { resourceVersion: String(rv) }
    if (page.length < items.length) {
      const token = { v: 'meta.k8s.io/v1', rv, start: keyOf(page[page.length - 1]) + '\u0000' }
      metadata.continue = Buffer.from(JSON.stringify(token)).toString('base64url')
      if (query.labelSelector === undefined && query.fieldSelector === undefined) metadata.remainingItemCount = items.length - page.length
    }
    const { kind, apiVersion } = RESOURCES[resource]
    // The real server leaves kind and apiVersion off list items.
    const bare = page.map(({ kind: _k, apiVersion: _a, ...rest }) => rest)
    this.reply(res, rec, 200, { kind: `${kind}List`, apiVersion, metadata, items: bare })
  }

  /** Which resourceVersion a list reads at, and the key it continues after. */
  private listPoint (query: Record<string, string>): { rv: number; start: string } {
    const match = query.resourceVersionMatch
    if (query.continue !== undefined && query.continue !== '') {
      if (query.resourceVersion !== undefined && query.resourceVersion !== '') throw new StatusError(422, 'Invalid', 'ListOptions.meta.k8s.io "" is invalid: resourceVersion: Forbidden: specifying resource version is not allowed when using continue')
      let token: { v?: unknown; rv?: unknown; start?: unknown }
      try {
        token = JSON.parse(Buffer.from(query.continue, 'base64url').toString()) as typeof token
      } catch {
        throw new StatusError(400, 'BadRequest', 'continue key is not valid: illegal base64 data')
      }
      if (token.v !== 'meta.k8s.io/v1' || typeof token.rv !== 'number' || typeof token.start !== 'string') throw new StatusError(400, 'BadRequest', 'continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)')
      if (token.rv < this.compactedRv) throw new StatusError(410, 'Expired', CONTINUE_EXPIRED)
      return { rv: token.rv, start: token.start }
    }
    if (query.resourceVersion === undefined || query.resourceVersion === '') {
      if (match !== undefined && match !== '') throw new StatusError(422, 'Invalid', 'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided')
      return { rv: this.rv, start: '' }
    }
    const rv = parseRv(query.resourceVersion)
    if (rv > this.rv) throw new StatusError(504, 'Timeout', `Too large resource version: ${rv}, current: ${this.rv}`)
    if (match === 'Exact') {
      if (rv < this.compactedRv) throw new StatusError(410, 'Expired', `too old resource version: ${rv} (${this.compactedRv})`)
      return { rv, start: '' }
    }
    if (match !== undefined && match !== '' && match !== 'NotOlderThan') throw new StatusError(422, 'Invalid', `ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Unsupported value: ${JSON.stringify(match)}`)
    return { rv: this.rv, start: '' }
  }

  private watch (res: http.ServerResponse, rec: RequestRecord, resource: Resource, filter: (o: KubeObject) => boolean, query: Record<string, string>): void {
    const from = query.resourceVersion === undefined || query.resourceVersion === '' || query.resourceVersion === '0' ? undefined : parseRv(query.resourceVersion)
    const initial = query.sendInitialEvents === 'true'
    const bookmarks = query.allowWatchBookmarks === 'true' || query.allowWatchBookmarks === '1'
    if (initial && (query.resourceVersionMatch !== 'NotOlderThan' || !bookmarks)) throw new StatusError(422, 'Invalid', 'ListOptions.meta.k8s.io "" is invalid: sendInitialEvents: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan and allowWatchBookmarks')
    const timeoutMs = query.timeoutSeconds === undefined ? this.watchTimeoutMs : parseRv(query.timeoutSeconds, 'timeoutSeconds') * 1000
    let gone = false
    res.on('close', () => { gone = true })
    const open = (): void => {
      if (gone) return
      this.openWatch(res, rec, { resource, filter, bookmarks, from, initial, timeoutMs })
      this.activity()
    }
    if (this.held === undefined) open()
    else this.held.push(open)
  }

  private openWatch (res: http.ServerResponse, rec: RequestRecord, o: { resource: Resource; filter: (o: KubeObject) => boolean; bookmarks: boolean; from: number | undefined; initial: boolean; timeoutMs: number }): void {
    rec.status = 200
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private' })
    res.flushHeaders()
    if (o.from !== undefined && o.from < this.compactedRv) {
      // Past authn and parsing, the real server reports an expired resourceVersion as an ERROR event, then ends the stream.
      rec.expired = true
      this.send(res, 'ERROR', status(410, 'Expired', `too old resource version: ${o.from} (${this.compactedRv})`))
      res.end()
      return
    }
    const w: Watcher = { resource: o.resource, filter: o.filter, bookmarks: o.bookmarks, fromRv: o.from ?? this.rv, res }
    this.watches.add(w)
    const timer = o.timeoutMs > 0 ? setTimeout(() => res.end(), o.timeoutMs) : undefined
    res.on('close', () => {
      clearTimeout(timer)
      this.watches.delete(w)
      this.activity()
    })
    if (o.from === undefined || o.initial) {
      // No resourceVersion (or "0"): synthetic ADDED events for the current state first, each with its own resourceVersion.
      const current = [...this.store(o.resource).values()].filter(o.filter).sort((a, b) => (keyOf(a) < keyOf(b) ? -1 : 1))
      for (const obj of current) this.send(res, 'ADDED', obj)
      if (o.initial) this.send(res, 'BOOKMARK', this.bookmarkObject(o.resource, { 'k8s.io/initial-events-end': 'true' }))
    } else {
      for (const ev of this.history) if (ev.resource === o.resource) this.deliver(w, ev)
    }
  }
}

export interface ServicePort { name?: string; port: number; targetPort?: number | string; protocol?: string; appProtocol?: string }

/** A ClusterIP Service as the API server returns it (defaults filled in). */
export function service (namespace: string, name: string, opts: { ports?: ServicePort[]; annotations?: Record<string, string>; labels?: Record<string, string>; ipFamilies?: string[]; clusterIP?: string; selector?: Record<string, string> } = {}): KubeObject {
  const ipFamilies = opts.ipFamilies ?? ['IPv4']
  const clusterIP = opts.clusterIP ?? fakeClusterIP(`${namespace}/${name}`, ipFamilies[0])
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace, ...(opts.labels && { labels: opts.labels }), ...(opts.annotations && { annotations: opts.annotations }) },
    spec: {
      ports: (opts.ports ?? [{ name: 'http', port: 80 }]).map((p) => ({ protocol: 'TCP', targetPort: p.port, ...p })),
      selector: opts.selector ?? { app: name },
      clusterIP,
      clusterIPs: [clusterIP],
      type: 'ClusterIP',
      sessionAffinity: 'None',
      ipFamilies,
      ipFamilyPolicy: ipFamilies.length > 1 ? 'PreferDualStack' : 'SingleStack',
      internalTrafficPolicy: 'Cluster',
    },
    status: { loadBalancer: {} },
  }
}

function fakeClusterIP (seed: string, family = 'IPv4'): string {
  let h = 0
  for (const c of seed) h = (h * 31 + c.charCodeAt(0)) >>> 0
  return family === 'IPv6' ? `fd00:10:96::${(h & 0xffff).toString(16)}` : `10.96.${(h >> 8) & 255}.${(h & 255) || 1}`
}

export interface EndpointSpec {
  addresses: string[]
  conditions?: { ready?: boolean; serving?: boolean; terminating?: boolean }
  targetRef?: { kind: 'Pod'; name: string; namespace: string; uid?: string }
  nodeName?: string
  zone?: string
  hostname?: string
}

export interface EndpointPortSpec { name?: string; port: number; protocol?: string; appProtocol?: string }

export interface EndpointSliceObject extends KubeObject {
  kind: 'EndpointSlice'
  addressType: string
  endpoints: EndpointSpec[] | null
  ports: EndpointPortSpec[] | null
}

/** An EndpointSlice of `serviceName` (labelled `kubernetes.io/service-name`); empty endpoints/ports become null, as served. */
export function endpointSlice (namespace: string, name: string, serviceName: string, opts: { addressType?: 'IPv4' | 'IPv6' | 'FQDN'; ports?: EndpointPortSpec[]; endpoints?: EndpointSpec[]; labels?: Record<string, string> } = {}): EndpointSliceObject {
  const obj: EndpointSliceObject = {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name,
      namespace,
      labels: { 'kubernetes.io/service-name': serviceName, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io', ...opts.labels },
    },
    addressType: opts.addressType ?? 'IPv4',
    endpoints: opts.endpoints ?? null,
    ports: (opts.ports ?? [{ name: 'http', port: 8080 }]).map((p) => ({ protocol: 'TCP', ...p })),
  }
  normalize(obj)
  return obj
}

/** A running Pod with one container and an IP. */
export function pod (namespace: string, name: string, opts: { serviceAccountName?: string; ip?: string; labels?: Record<string, string>; nodeName?: string; phase?: string } = {}): KubeObject {
  const ip = opts.ip ?? '10.244.0.10'
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, labels: opts.labels ?? { app: name } },
    spec: { serviceAccountName: opts.serviceAccountName ?? 'default', nodeName: opts.nodeName ?? 'node-1', containers: [{ name: 'app', image: 'app:latest' }] },
    status: { phase: opts.phase ?? 'Running', podIP: ip, podIPs: [{ ip }] },
  }
}

/** A Namespace (the server adds its kubernetes.io/metadata.name label, finalizer and phase when stored). */
export function namespace (name: string, opts: { labels?: Record<string, string>; annotations?: Record<string, string> } = {}): KubeObject {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name, ...(opts.labels && { labels: opts.labels }), ...(opts.annotations && { annotations: opts.annotations }) } }
}

/** A ConfigMap with string data. */
export function configMap (namespace: string, name: string, data: Record<string, string>, opts: { labels?: Record<string, string> } = {}): KubeObject {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace, ...(opts.labels && { labels: opts.labels }) }, data }
}
