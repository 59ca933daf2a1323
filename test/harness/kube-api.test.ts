// The fake Kubernetes API server, proven with the real @kubernetes/client-node 2.0.1 informer, Watch and API clients.
//
// What client-node 2.0.1's informer does (dist/cache.js ListWatch, dist/watch.js Watch), as these tests show:
// - makeInformer(kc, path, listFn, labelSelector) is `new ListWatch(path, new Watch(kc), listFn, false, labelSelector)`.
//   start() fires 'connect', lists if it has no resourceVersion (else it does NOT list), then watches with only
//   `resourceVersion` (+ labelSelector/fieldSelector): no allowWatchBookmarks, no timeoutSeconds. So a real
//   server never sends it BOOKMARKs; objects from the list are deserialized models (creationTimestamp a Date,
//   unknown fields dropped, no kind/apiVersion), objects from the watch are the raw JSON (strings, everything kept).
// - Stream ends cleanly (server timeout, graceful apiserver restart): restarts by itself. 'connect' fires, then a
//   re-watch from the last resourceVersion, no relist. Delay: none if the ended watch delivered any event
//   (ADDED/MODIFIED/DELETED/BOOKMARK); otherwise 1 s, doubling to 30 s, until an event resets it to 0.
// - ERROR event with code 410 (and also a watch answered with HTTP 410): forgets the resourceVersion, no callback;
//   when the stream then ends it restarts by itself: 'connect', a full relist (objects missing from it fire
//   'delete' with the stale cached object, new ones 'add', changed ones 'update'), then the watch, after the
//   backoff delay above (computed after the list, typically 1 s). Other ERROR events are ignored.
// - No data for 30 s (Watch's private requestTimeoutMs): the client aborts and re-watches at once from the last
//   resourceVersion, no 'error'. Without bookmarks a quiet resource is re-watched every 30 s.
// - Any other failure: the watch answered with a non-200 status, a connection refused or reset mid-stream
//   (undici 'terminated'), a failed list (ApiException, `.code` = HTTP status; a list that cannot be deserialized
//   throws a TypeError): the 'error' callbacks fire and the informer STOPS for good. The user must call start()
//   again (with their own backoff); start() resumes the watch from the kept resourceVersion without relisting, or
//   lists if it was forgotten (after a 410). Calling start() while it is still running starts a second loop.
// - stop() aborts the watch, and that abort then fires the 'error' callbacks (an AbortError, "This operation was
//   aborted") a moment later: ignore errors after stop(). A stop() during a backoff delay does not cancel the watch
//   that follows the delay: it still opens and feeds add/update/delete callbacks until the server ends it.
// - ApiException.body is the raw response text (parse it for the Status); only 401 has its own message.
import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  CoreV1Api, DiscoveryV1Api, ListWatch, makeInformer, Watch,
  type KubeConfig, type KubernetesObject, type V1EndpointSlice, type V1Service,
} from '@kubernetes/client-node'
import { FakeKubeApi, endpointSlice, pod, service, type KubeObject } from './kube-api.ts'
import type { Teardown } from './mesh.ts'

type Informer<T extends KubernetesObject> = ListWatch<T>
const VERBS = ['add', 'update', 'delete', 'connect', 'error'] as const

interface Setup { api: FakeKubeApi; kc: KubeConfig; core: CoreV1Api; disc: DiscoveryV1Api; track: <T extends KubernetesObject>(i: Informer<T>) => Informer<T> }

/** A fresh server and clients; informers passed to `track` are stopped before the server closes. */
async function setup (t: Teardown): Promise<Setup> {
  const api = await FakeKubeApi.start()
  const kc = api.kubeConfig()
  const informers: Array<Informer<KubernetesObject>> = []
  t.teardown(async () => {
    for (const i of informers) await i.stop()
    await api.close()
  })
  const track = <T extends KubernetesObject>(i: Informer<T>): Informer<T> => { informers.push(i as unknown as Informer<KubernetesObject>); return i }
  return { api, kc, core: kc.makeApiClient(CoreV1Api), disc: kc.makeApiClient(DiscoveryV1Api), track }
}

/** An ApiException as `{ code, status }`, the Status parsed from its body (client-node keeps the raw text there). */
async function apiError (p: Promise<unknown>): Promise<{ code: number; status: Record<string, unknown> }> {
  try {
    await p
  } catch (err) {
    const { code, body } = err as { code: number; body: unknown }
    return { code, status: typeof body === 'string' ? JSON.parse(body) as Record<string, unknown> : {} }
  }
  throw new Error('expected the call to fail')
}

/** Every informer callback as `verb ns/name` ('connect', 'error: message'), in order. */
function record<T extends KubernetesObject> (inf: Informer<T>): string[] {
  const log: string[] = []
  inf.on('add', (o) => log.push(`add ${o.metadata?.namespace}/${o.metadata?.name}`))
  inf.on('update', (o) => log.push(`update ${o.metadata?.namespace}/${o.metadata?.name}`))
  inf.on('delete', (o) => log.push(`delete ${o.metadata?.namespace}/${o.metadata?.name}`))
  inf.on('connect', () => log.push('connect'))
  inf.on('error', (e) => log.push(`error: ${(e as Error).message}`))
  return log
}

/** Resolves once `pred` holds, re-checked on every informer callback. */
async function until<T extends KubernetesObject> (inf: Informer<T>, pred: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  if (pred()) return
  await new Promise<void>((resolve, reject) => {
    const check = (): void => { if (pred()) finish(undefined) }
    const timer = setTimeout(() => finish(new Error(`timed out waiting for ${what}`)), timeoutMs)
    const finish = (err: Error | undefined): void => {
      clearTimeout(timer)
      for (const v of VERBS) inf.off(v as 'add', check)
      if (err === undefined) resolve()
      else reject(err)
    }
    for (const v of VERBS) inf.on(v as 'add', check)
  })
}

const names = <T extends KubernetesObject>(inf: Informer<T>): string[] => inf.list().map((o) => `${o.metadata?.namespace}/${o.metadata?.name}`).sort()

const sliceInformer = (s: Setup, labelSelector?: string): Informer<V1EndpointSlice> =>
  s.track(makeInformer(s.kc, '/apis/discovery.k8s.io/v1/endpointslices', () => s.disc.listEndpointSliceForAllNamespaces({ labelSelector }), labelSelector) as Informer<V1EndpointSlice>)

interface RawWatch { events: Array<{ type: string; object: KubeObject }>; ended: Promise<unknown>; next: (n: number) => Promise<void> }

/** A raw Watch stream: every event, a promise for its end, and `next(n)` resolving once n events arrived. */
async function rawWatch (kc: KubeConfig, path: string, query: Record<string, string | number | boolean>): Promise<RawWatch> {
  const events: RawWatch['events'] = []
  const waiters: Array<{ n: number; resolve: () => void }> = []
  let end: (err: unknown) => void = () => {}
  const ended = new Promise<unknown>((resolve) => { end = resolve })
  const onEvent = (type: string, object: KubeObject): void => {
    events.push({ type, object })
    for (const w of waiters.filter((w) => events.length >= w.n)) w.resolve()
  }
  await new Watch(kc).watch(path, query, onEvent, (err) => end(err))
  const next = async (n: number): Promise<void> => {
    if (events.length < n) await new Promise<void>((resolve) => waiters.push({ n, resolve }))
  }
  return { events, ended, next }
}

t.test('list then watch: the informer sees add, update and delete; a no-op update is no event', async (t) => {
  const s = await setup(t)
  const { api, core } = s
  api.apply(service('demo', 'web', { ports: [{ name: 'http', port: 80, targetPort: 8080 }] }))
  api.apply(pod('demo', 'web-0', { ip: '10.244.0.5' }))
  const inf = s.track(makeInformer(s.kc, '/api/v1/services', () => core.listServiceForAllNamespaces()) as Informer<V1Service>)
  const log = record(inf)
  await inf.start()
  t.same(log, ['connect', 'add demo/web'])
  t.match(api.requests.map((r) => [r.verb, r.url]), [['list', '/api/v1/services'], ['watch', '/api/v1/services?watch=true&resourceVersion=3']])
  t.equal(api.watchers('services'), 1)
  const listed = inf.get('web', 'demo')
  t.ok(listed?.metadata?.creationTimestamp instanceof Date, 'listed objects are deserialized models')
  t.equal(listed?.kind, undefined, 'list items carry no kind')
  t.equal(listed?.spec?.ports?.[0].targetPort, 8080)

  api.apply(service('demo', 'api'))
  await until(inf, () => inf.get('api', 'demo') !== undefined, 'add demo/api')
  t.equal(inf.get('api', 'demo')?.kind, 'Service', 'watched objects are raw JSON with kind')
  t.equal(typeof inf.get('api', 'demo')?.metadata?.creationTimestamp, 'string')

  const updated = api.apply(service('demo', 'web', { annotations: { 'remora.dev/timeout': '2s' } }))
  await until(inf, () => inf.get('web', 'demo')?.metadata?.resourceVersion === updated.metadata.resourceVersion, 'update demo/web')
  t.same(inf.get('web', 'demo')?.metadata?.annotations, { 'remora.dev/timeout': '2s' })
  t.equal(inf.get('web', 'demo')?.metadata?.uid, listed?.metadata?.uid, 'an update keeps the uid')

  const rv = api.resourceVersion()
  t.equal(api.apply(service('demo', 'web', { annotations: { 'remora.dev/timeout': '2s' } })).metadata.resourceVersion, updated.metadata.resourceVersion)
  t.equal(api.resourceVersion(), rv, 'an identical apply bumps nothing')

  const gone = api.remove('Service', 'demo', 'api')
  t.equal(gone?.metadata.resourceVersion, String(Number(rv) + 1), 'a delete takes a new resourceVersion')
  await until(inf, () => inf.get('api', 'demo') === undefined, 'delete demo/api')
  t.same(log, ['connect', 'add demo/web', 'add demo/api', 'update demo/web', 'delete demo/api'])
  t.equal(inf.latestResourceVersion(), gone?.metadata.resourceVersion)
  t.equal(api.count('list'), 1, 'one list, no relist')

  // The namespaced path and GET by name through the API client.
  api.apply(service('other', 'web'))
  t.same((await core.listNamespacedService({ namespace: 'other' })).items.map((i) => i.metadata?.namespace), ['other'])
  t.equal((await core.readNamespacedService({ namespace: 'demo', name: 'web' })).kind, 'Service')
  t.equal((await core.readNamespacedPod({ namespace: 'demo', name: 'web-0' })).status?.podIP, '10.244.0.5')
})

t.test('bookmarks: the informer never asks for them; one whose Watch does advances its resourceVersion without events', async (t) => {
  const s = await setup(t)
  const { api, core } = s
  api.apply(service('demo', 'web'))

  const plain = s.track(makeInformer(s.kc, '/api/v1/services', () => core.listServiceForAllNamespaces()) as Informer<V1Service>)
  await plain.start()
  t.notMatch(api.requests.at(-1)?.query, { allowWatchBookmarks: String }, 'makeInformer does not ask for bookmarks')

  // Opting in: a Watch that adds allowWatchBookmarks=true, fed to a ListWatch (what makeInformer builds).
  class BookmarkWatch extends Watch {
    readonly seen: string[] = []
    onEvent: () => void = () => {}
    override async watch (path: string, query: Record<string, string | number | boolean | undefined>, cb: (phase: string, obj: KubeObject, raw?: unknown) => void, done: (err: unknown) => void): Promise<AbortController> {
      return super.watch(path, { ...query, allowWatchBookmarks: true }, (phase, obj: KubeObject, raw) => {
        cb(phase, obj, raw)
        this.seen.push(`${phase} ${obj.metadata.resourceVersion}`)
        this.onEvent()
      }, done)
    }
  }
  const bw = new BookmarkWatch(s.kc)
  const inf = s.track(new ListWatch<V1Service>('/api/v1/services', bw, () => core.listServiceForAllNamespaces(), false))
  const log = record(inf)
  await inf.start()
  t.match(api.requests.at(-1)?.query, { allowWatchBookmarks: 'true', resourceVersion: '2' })

  // Other resources move the global resourceVersion; a bookmark carries it to the Service watchers that asked.
  api.apply(endpointSlice('demo', 'web-abc', 'web'))
  api.apply(pod('demo', 'web-0'))
  const bookmarked = new Promise<void>((resolve) => { bw.onEvent = resolve })
  api.bookmark()
  await bookmarked
  t.same(bw.seen, ['BOOKMARK 4'])
  t.equal(inf.latestResourceVersion(), '4', 'the bookmark moved the informer on')
  t.equal(plain.latestResourceVersion(), '2', 'the plain informer got no bookmark')
  t.same(log, ['connect', 'add demo/web'], 'no object events')

  // Worth it: after a compaction at the bookmark's resourceVersion, a reconnect needs no relist.
  api.compact()
  const lists = api.count('list')
  const watches = api.count('watch')
  t.equal(api.dropWatches(), 2)
  await api.waitFor(() => api.watchers('services') === 2 && api.count('watch') === watches + 3)
  t.equal(api.count('list'), lists + 1, 'only the plain informer (stuck at 2) relisted')
  t.match(api.requests.filter((r) => r.expired).map((r) => r.query.resourceVersion), ['2'])

  // The raw event: kind, apiVersion and metadata.resourceVersion only.
  const w = await rawWatch(s.kc, '/apis/discovery.k8s.io/v1/endpointslices', { resourceVersion: api.resourceVersion(), allowWatchBookmarks: true })
  api.bookmark()
  await w.next(1)
  t.same(w.events, [{ type: 'BOOKMARK', object: { kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1', metadata: { resourceVersion: '4' } } }])
})

t.test('after compact() and a dropped watch the informer gets 410 and relists by itself', async (t) => {
  const s = await setup(t)
  const { api } = s
  api.apply(endpointSlice('demo', 'web-a', 'web', { endpoints: [{ addresses: ['10.244.0.1'], conditions: { ready: true } }] }))
  api.apply(endpointSlice('demo', 'web-b', 'web'))
  const inf = sliceInformer(s)
  const log = record(inf)
  await inf.start()
  t.same(names(inf), ['demo/web-a', 'demo/web-b'])

  // Disconnected (the reconnect is parked) while things change and history is compacted away.
  api.holdWatches()
  t.equal(api.dropWatches(), 1)
  await api.waitFor(() => api.heldWatches() === 1)
  api.remove('EndpointSlice', 'demo', 'web-a')
  const b = api.apply(endpointSlice('demo', 'web-b', 'web', { endpoints: [{ addresses: ['10.244.0.2'], conditions: { ready: false } }] }))
  api.apply(endpointSlice('demo', 'web-c', 'web'))
  api.compact()
  t.equal(api.count('list', 'endpointslices'), 1)
  api.releaseWatches()

  await until(inf, () => names(inf).join() === 'demo/web-b,demo/web-c', 'the relist')
  t.equal(api.count('list', 'endpointslices'), 2, 'relisted')
  t.match(api.requests.find((r) => r.expired), { verb: 'watch', status: 200, query: { resourceVersion: '3' } })
  t.same(log, ['connect', 'add demo/web-a', 'add demo/web-b', 'connect', 'connect', 'delete demo/web-a', 'update demo/web-b', 'add demo/web-c'])
  t.equal(inf.get('web-b', 'demo')?.metadata?.resourceVersion, b.metadata.resourceVersion)
  t.same(inf.get('web-b', 'demo')?.endpoints?.[0].addresses, ['10.244.0.2'])
  await api.waitFor(() => api.watchers('endpointslices') === 1)
  t.match(api.requests.at(-1), { verb: 'watch', query: { resourceVersion: api.resourceVersion() } }, 'watching again from the list')

  // On the wire: one ERROR event, exactly as the apiserver words it, then the stream ends.
  const w = await rawWatch(s.kc, '/apis/discovery.k8s.io/v1/namespaces/demo/endpointslices', { resourceVersion: 2 })
  t.equal(await w.ended, null, 'the stream ended cleanly')
  t.same(w.events, [{ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `too old resource version: 2 (${api.resourceVersion()})`, reason: 'Expired', code: 410 } }])
})

t.test('a dropped watch resumes from the last resourceVersion without a relist', async (t) => {
  const s = await setup(t)
  const { api } = s
  api.apply(endpointSlice('demo', 'web-a', 'web'))
  const inf = sliceInformer(s)
  const log = record(inf)
  await inf.start()
  const seen = api.apply(endpointSlice('demo', 'web-b', 'web'))
  await until(inf, () => inf.get('web-b', 'demo') !== undefined, 'add web-b')

  api.holdWatches()
  api.dropWatches()
  await api.waitFor(() => api.heldWatches() === 1)
  api.remove('EndpointSlice', 'demo', 'web-a')
  api.apply(endpointSlice('demo', 'web-c', 'web'))
  api.releaseWatches()
  await until(inf, () => names(inf).join() === 'demo/web-b,demo/web-c', 'the replayed events')
  t.equal(api.count('list'), 1, 'no relist')
  t.match(api.requests.at(-1), { verb: 'watch', status: 200, query: { resourceVersion: seen.metadata.resourceVersion } })
  t.notOk(api.requests.some((r) => r.expired))
  t.same(log, ['connect', 'add demo/web-a', 'add demo/web-b', 'connect', 'delete demo/web-a', 'add demo/web-c'])
})

t.test('paginated lists: limit and continue through the API client, one consistent snapshot, 410 once compacted', async (t) => {
  const { api, core } = await setup(t)
  for (const ns of ['a', 'b']) for (const n of ['s1', 's2', 's3']) api.apply(service(ns, n))
  const first = await core.listServiceForAllNamespaces({ limit: 4 })
  t.same(first.items.map((i) => `${i.metadata?.namespace}/${i.metadata?.name}`), ['a/s1', 'a/s2', 'a/s3', 'b/s1'])
  t.equal(first.metadata?.remainingItemCount, 2)
  t.equal(first.metadata?.resourceVersion, '7')
  const token = first.metadata?._continue
  t.type(token, 'string')

  api.apply(service('b', 's4'))
  api.remove('Service', 'b', 's2')
  const rest = await core.listServiceForAllNamespaces({ limit: 4, _continue: token })
  t.same(rest.items.map((i) => `${i.metadata?.namespace}/${i.metadata?.name}`), ['b/s2', 'b/s3'], 'the snapshot of the first page, not the changes since')
  t.equal(rest.metadata?.resourceVersion, '7')
  t.equal(rest.metadata?._continue, undefined, 'last page')

  const ns = await core.listNamespacedService({ namespace: 'b', limit: 1 })
  t.same(ns.items.map((i) => i.metadata?.name), ['s1'])
  t.same((await core.listNamespacedService({ namespace: 'b', _continue: ns.metadata?._continue })).items.map((i) => i.metadata?.name), ['s3', 's4'])

  const exact = await core.listServiceForAllNamespaces({ resourceVersion: '4', resourceVersionMatch: 'Exact' })
  t.same(exact.items.map((i) => `${i.metadata?.namespace}/${i.metadata?.name}`), ['a/s1', 'a/s2', 'a/s3'], 'resourceVersionMatch=Exact reads the past')

  api.compact()
  t.match(await apiError(core.listServiceForAllNamespaces({ _continue: token })),
    { code: 410, status: { kind: 'Status', reason: 'Expired', code: 410, message: /continue parameter is too old/ } })
  t.match(await apiError(core.listServiceForAllNamespaces({ resourceVersion: '4', resourceVersionMatch: 'Exact' })),
    { code: 410, status: { reason: 'Expired', message: 'too old resource version: 4 (9)' } })
})

t.test('label selectors filter lists, and a watch sees objects enter and leave the selection', async (t) => {
  const s = await setup(t)
  const { api, core } = s
  api.apply(service('demo', 'web', { labels: { app: 'web', tier: 'front' } }))
  api.apply(service('demo', 'api', { labels: { app: 'api', tier: 'back' } }))
  api.apply(service('demo', 'db', { labels: { app: 'db' } }))
  const sel = async (labelSelector: string): Promise<string[]> => (await core.listServiceForAllNamespaces({ labelSelector })).items.map((i) => i.metadata?.name ?? '').sort()
  t.same(await sel('app=web'), ['web'])
  t.same(await sel('app==web'), ['web'])
  t.same(await sel('tier!=front'), ['api', 'db'], '!= matches objects without the label')
  t.same(await sel('tier in (front,back)'), ['api', 'web'])
  t.same(await sel('tier notin (front)'), ['api', 'db'])
  t.same(await sel('tier'), ['api', 'web'])
  t.same(await sel('!tier'), ['db'])
  t.same(await sel('tier,app!=api'), ['web'])
  t.same((await core.listServiceForAllNamespaces({ fieldSelector: 'metadata.name=db' })).items.map((i) => i.metadata?.name), ['db'])
  t.match(await apiError(sel('tier in front')), { code: 400, status: { reason: 'BadRequest' } })

  api.apply(endpointSlice('demo', 'web-a', 'web'))
  api.apply(endpointSlice('demo', 'api-a', 'api'))
  const inf = sliceInformer(s, 'kubernetes.io/service-name=web')
  const log = record(inf)
  await inf.start()
  t.match(api.requests.at(-1)?.query, { labelSelector: 'kubernetes.io/service-name=web' })
  t.same(names(inf), ['demo/web-a'])
  api.apply(endpointSlice('demo', 'api-a', 'api', { labels: { 'kubernetes.io/service-name': 'web' } }))
  await until(inf, () => inf.get('api-a', 'demo') !== undefined, 'api-a enters the selection')
  api.apply(endpointSlice('demo', 'web-a', 'other'))
  await until(inf, () => inf.get('web-a', 'demo') === undefined, 'web-a leaves it')
  api.apply(endpointSlice('demo', 'x', 'api'))
  api.apply(endpointSlice('demo', 'y', 'web'))
  await until(inf, () => inf.get('y', 'demo') !== undefined, 'y')
  t.same(log, ['connect', 'add demo/web-a', 'add demo/api-a', 'delete demo/web-a', 'add demo/y'], 'x never shows')
})

t.test('the informer stops on errors and needs start() again: abrupt drop, 503 on watch, 503 on the relist', async (t) => {
  const s = await setup(t)
  const { api } = s
  api.apply(endpointSlice('demo', 'web-a', 'web'))
  const inf = sliceInformer(s)
  const log = record(inf)
  await inf.start()
  const errors = (): number => log.filter((l) => l.startsWith('error')).length

  t.equal(api.dropWatches({ abrupt: true }), 1)
  await until(inf, () => errors() === 1, "'error'")
  t.equal(log.at(-1), 'error: terminated', 'undici reports the reset mid-stream')
  await sleep(300)
  t.equal(api.watchers(), 0, 'no reconnect by itself')
  api.apply(endpointSlice('demo', 'web-b', 'web'))
  await inf.start()
  await until(inf, () => inf.get('web-b', 'demo') !== undefined, 'resumed')
  t.equal(api.count('list'), 1, 'start() resumed the watch without a list')

  api.fail(1, 503, { verb: 'watch' })
  api.dropWatches()
  await until(inf, () => errors() === 2, "'error'")
  t.equal(log.at(-1), 'error: Service Unavailable')
  t.match(api.requests.at(-1), { verb: 'watch', status: 503 })
  await sleep(300)
  t.equal(api.watchers(), 0, 'no retry after a 503')
  await inf.start()
  t.equal(api.watchers(), 1)

  // A 410 makes it relist; the relist fails; it stops again and start() lists.
  api.holdWatches()
  api.dropWatches()
  await api.waitFor(() => api.heldWatches() === 1)
  api.remove('EndpointSlice', 'demo', 'web-a')
  api.compact()
  api.fail(1, 503, { verb: 'list' })
  api.releaseWatches()
  await until(inf, () => errors() === 3, "'error'")
  t.match(log.at(-1), /^error: HTTP-Code: 503\nMessage: Unknown API Status Code!/)
  t.same(names(inf), ['demo/web-a', 'demo/web-b'], 'the stale cache stays')
  await inf.start()
  t.same(names(inf), ['demo/web-b'])
  t.equal(api.count('list'), 3)
  t.equal(api.watchers(), 1)

  // A watch answered with HTTP 410 (not an ERROR event) relists by itself, without an 'error'.
  api.apply(endpointSlice('demo', 'web-c', 'web'))
  await until(inf, () => inf.list().length === 2, 'web-c')
  api.fail(1, 410, { verb: 'watch' })
  api.dropWatches()
  await api.waitFor(() => api.count('list') === 4 && api.watchers() === 1)
  t.match(api.requests.filter((r) => r.verb === 'watch').at(-2), { status: 410 })
  t.equal(errors(), 3, 'no new error')
})

t.test('stop(): fires an AbortError, and does not cancel a watch already waiting out a backoff delay', async (t) => {
  const s = await setup(t)
  const { api, disc } = s
  let release = (): void => {}
  const inf = s.track(new ListWatch<V1EndpointSlice>('/apis/discovery.k8s.io/v1/endpointslices', new Watch(s.kc), () => disc.listEndpointSliceForAllNamespaces(), false, undefined, undefined, {
    delayFn: async () => new Promise<void>((resolve) => { release = resolve }),
  }))
  const log = record(inf)
  await inf.start()
  await inf.stop()
  await until(inf, () => log.length === 2, "the 'error'")
  t.same(log, ['connect', 'error: This operation was aborted'])
  await api.waitFor(() => api.watchers() === 0)

  await inf.start()
  api.dropWatches()
  await api.waitFor(() => api.watchers() === 1)
  api.dropWatches()
  await until(inf, () => log.length === 5, 'the third connect')
  t.equal(api.watchers(), 0, 'waiting out the 1 s delay')
  await inf.stop()
  release()
  await api.waitFor(() => api.watchers() === 1)
  api.apply(endpointSlice('demo', 'late', 'web'))
  await until(inf, () => log.includes('add demo/late'), 'the add after stop()')
  t.same(log, ['connect', 'error: This operation was aborted', 'connect', 'connect', 'connect', 'add demo/late'], 'events after stop()')
})

t.test('reconnect backoff: 1 s doubling for streams that end without events, reset by an event; client inactivity timeout', async (t) => {
  const s = await setup(t)
  const { api, disc } = s
  const delays: number[] = []
  const watch = new Watch(s.kc)
  const inf = s.track(new ListWatch<V1EndpointSlice>('/apis/discovery.k8s.io/v1/endpointslices', watch, () => disc.listEndpointSliceForAllNamespaces(), false, undefined, undefined, {
    delayFn: async (ms) => { delays.push(ms) },
  }))
  const log = record(inf)
  await inf.start()
  const rewatch = async (): Promise<void> => {
    const n = api.count('watch')
    api.dropWatches()
    await api.waitFor(() => api.count('watch') === n + 1 && api.watchers() === 1)
  }
  await rewatch()
  await rewatch()
  await rewatch()
  t.same(delays, [1000, 2000], 'none, then 1 s, 2 s')
  api.apply(endpointSlice('demo', 'web-a', 'web'))
  await until(inf, () => inf.list().length === 1, 'an event')
  await rewatch()
  await rewatch()
  t.same(delays, [1000, 2000, 1000], 'an event resets the delay')
  t.equal(api.count('list'), 1)

  // No bytes for requestTimeoutMs (30 s by default): the client aborts and re-watches at once, no 'error'.
  ;(watch as unknown as { requestTimeoutMs: number }).requestTimeoutMs = 200
  await rewatch()
  const n = api.count('watch')
  await api.waitFor(() => api.count('watch') === n + 1 && api.watchers() === 1)
  t.notOk(log.some((l) => l.startsWith('error')))
  ;(watch as unknown as { requestTimeoutMs: number }).requestTimeoutMs = 30_000
})

t.test('raw watch semantics: initial ADDED without a resourceVersion, replay from one, timeoutSeconds, namespace filter', async (t) => {
  const { api, kc } = await setup(t)
  api.apply(service('a', 's1'))
  api.apply(service('b', 's2'))
  const all = await rawWatch(kc, '/api/v1/services', { timeoutSeconds: 1 })
  const nsA = await rawWatch(kc, '/api/v1/namespaces/a/services', { resourceVersion: '1' })
  api.apply(service('a', 's3'))
  api.remove('Service', 'b', 's2')
  await nsA.next(2)
  t.equal(await all.ended, null, 'timeoutSeconds ends the stream')
  t.same(all.events.map((e) => `${e.type} ${e.object.metadata.namespace}/${e.object.metadata.name} ${e.object.metadata.resourceVersion}`),
    ['ADDED a/s1 2', 'ADDED b/s2 3', 'ADDED a/s3 4', 'DELETED b/s2 5'])
  t.same(nsA.events.map((e) => `${e.type} ${e.object.metadata.name}`), ['ADDED s1', 'ADDED s3'])
  t.equal(nsA.events[0].object.kind, 'Service')
  await api.waitFor(() => api.watchers('services') === 1)
})

t.test('errors are Status objects with the right code; discovery answers', async (t) => {
  const { api, kc, core } = await setup(t)
  t.match(await apiError(core.readNamespacedService({ namespace: 'demo', name: 'nope' })),
    { code: 404, status: { kind: 'Status', reason: 'NotFound', message: 'services "nope" not found', code: 404 } })
  const get = async (path: string, token = 'fake-token'): Promise<{ status: number; body: Record<string, unknown> }> => {
    const res = await fetch(api.url + path, { headers: { authorization: `Bearer ${token}` } })
    return { status: res.status, body: await res.json() as Record<string, unknown> }
  }
  t.match(await get('/api/v1/widgets'), { status: 404, body: { kind: 'Status', reason: 'NotFound' } })
  t.match(await get('/api/v1/endpointslices'), { status: 404 }, 'EndpointSlices live in discovery.k8s.io')
  t.match(await get('/api/v1/services?labelSelector=a%20in%20b'), { status: 400, body: { reason: 'BadRequest' } })
  t.match(await get('/api/v1/services?resourceVersion=x'), { status: 400 })
  t.match(await get('/api/v1/services?resourceVersion=99'), { status: 504, body: { reason: 'Timeout' } })
  t.match(await get('/api/v1/services', 'wrong'), { status: 401, body: { reason: 'Unauthorized' } })
  t.match(await get('/api'), { status: 200, body: { kind: 'APIVersions', versions: ['v1'] } })
  t.match(await get('/apis'), { status: 200, body: { kind: 'APIGroupList', groups: [{ name: 'discovery.k8s.io' }] } })
  t.match(await get('/apis/discovery.k8s.io/v1'), { status: 200, body: { kind: 'APIResourceList', resources: [{ name: 'endpointslices', kind: 'EndpointSlice' }] } })
  api.fail(2, 500)
  t.match(await get('/api/v1/pods'), { status: 500, body: { reason: 'InternalError', code: 500 } })
  t.match(await apiError(core.listPodForAllNamespaces()), { code: 500, status: { reason: 'InternalError' } })
  t.match(await get('/api/v1/pods'), { status: 200, body: { kind: 'PodList', metadata: { resourceVersion: '1' }, items: [] } })
  t.equal(kc.getCurrentCluster()?.server, api.url)
})

t.test('malformed objects are stored and served as given; client-node passes them raw on the watch and may choke on the list', async (t) => {
  const s = await setup(t)
  const { api, disc } = s
  t.throws(() => api.applyRaw({ kind: 'Secret', metadata: { name: 'x' } }), /kind must be/)
  t.throws(() => api.applyRaw({ kind: 'Pod', metadata: {} }), /metadata\.name/)
  t.equal(endpointSlice('demo', 'empty', 'web').endpoints, null, 'no endpoints serialize as null, as the apiserver does')

  const inf = sliceInformer(s)
  await inf.start()
  api.applyRaw({ ...endpointSlice('demo', 'no-addresses', 'web'), endpoints: [{ conditions: { ready: true } }] })
  api.applyRaw({ ...endpointSlice('demo', 'not-an-array', 'web'), endpoints: { oops: true }, ports: 'http' })
  await until(inf, () => inf.list().length === 2, 'both bad slices')
  t.same(inf.get('not-an-array', 'demo')?.endpoints, { oops: true }, 'the watch hands over the raw JSON')

  const err = await disc.listEndpointSliceForAllNamespaces().catch((e: unknown) => e)
  t.match(err, TypeError, 'the list cannot be deserialized (so an informer relisting now would stop with an error)')
  t.match(err, { message: 'data is not iterable' })
  api.applyRaw({ ...endpointSlice('demo', 'not-an-array', 'web'), endpoints: 'abc' })
  const listed = await disc.listEndpointSliceForAllNamespaces()
  t.same(listed.items.find((i) => i.metadata?.name === 'not-an-array')?.endpoints, [{}, {}, {}], 'a string is iterated: one empty endpoint per character')
})
