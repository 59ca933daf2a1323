// The Kubernetes source with the real client-node against the fake API server: sync, changes, 410, drops, errors.
import { EventEmitter } from 'node:events'
import t from 'tap'
import type { Teardown } from '../harness/mesh.ts'
import { pino } from 'pino'
import { Catalog } from '../../src/control/catalog.ts'
import { KubernetesSource, type KubeSourceErrorKind } from '../../src/control/kube-source.ts'
import { FakeKubeApi, endpointSlice, pod, service, type EndpointSpec } from '../harness/kube-api.ts'

interface LogLine { level: number, msg: string, [k: string]: unknown }

const ep = (ip: string, podName: string, conditions: EndpointSpec['conditions'] = { ready: true, serving: true, terminating: false }): EndpointSpec =>
  ({ addresses: [ip], conditions, targetRef: { kind: 'Pod', name: podName, namespace: 'demo' } })
const webSlice = (...eps: EndpointSpec[]) => endpointSlice('demo', 'web-abc12', 'web', { endpoints: eps })

async function setup (t: Teardown, opts: { namespaces?: string[], before?: (api: FakeKubeApi) => void } = {}) {
  const api = await FakeKubeApi.start()
  for (let i = 1; i <= 4; i++) api.apply(pod('demo', `web-${i}`, { serviceAccountName: 'web', ip: `10.0.0.${i}` }))
  api.apply(service('demo', 'web'))
  api.apply(webSlice(ep('10.0.0.1', 'web-1'), ep('10.0.0.2', 'web-2')))
  opts.before?.(api)
  const logs: LogLine[] = []
  const logged = new EventEmitter()
  const log = pino({ level: 'debug' }, { write: (s: string) => { logs.push(JSON.parse(s) as LogLine); logged.emit('line') } })
  const errors: KubeSourceErrorKind[] = []
  /** What the gauge of objects carrying an annotation without effect would show, by `kind annotation`. */
  const gauge = new Map<string, number>()
  const gaugeChanged = new EventEmitter()
  const catalog = new Catalog()
  const source = new KubernetesSource({
    kubeConfig: api.kubeConfig(), trustDomain: 'cluster.local', inboundPort: 15006, log,
    namespaces: opts.namespaces, onError: (k) => errors.push(k), backoff: { baseMs: 20, maxMs: 200 },
    onAnnotationWithoutEffect: (kind, annotation, delta) => {
      gauge.set(`${kind} ${annotation}`, (gauge.get(`${kind} ${annotation}`) ?? 0) + delta)
      gaugeChanged.emit('change')
    },
  })
  t.teardown(async () => { await source.stop(); await api.close() })
  /** Resolves once `predicate` holds over the log lines, checked on every line; fails after `ms`. */
  const untilLogged = (predicate: (lines: LogLine[]) => boolean, ms = 5000): Promise<void> => new Promise((resolve, reject) => {
    const check = (): void => { if (predicate(logs)) { clearTimeout(timer); logged.off('line', check); resolve() } }
    const timer = setTimeout(() => { logged.off('line', check); reject(new Error(`log condition not met in ${ms} ms: ${logs.map((l) => l.msg).join(' | ')}`)) }, ms)
    logged.on('line', check)
    check()
  })
  /** Resolves once `predicate` holds over the gauge, checked on every change of it; fails after `ms`. */
  const untilGauge = (predicate: (g: Map<string, number>) => boolean, ms = 5000): Promise<void> => new Promise((resolve, reject) => {
    const check = (): void => { if (predicate(gauge)) { clearTimeout(timer); gaugeChanged.off('change', check); resolve() } }
    const timer = setTimeout(() => { gaugeChanged.off('change', check); reject(new Error(`gauge condition not met in ${ms} ms: ${JSON.stringify(Object.fromEntries(gauge))}`)) }, ms)
    gaugeChanged.on('change', check)
    check()
  })
  return { api, catalog, source, logs, errors, gauge, untilLogged, untilGauge }
}

/** Resolves when `predicate` holds, checked on every catalog change. */
function until (catalog: Catalog, predicate: () => boolean, ms = 5000): Promise<void> {
  if (predicate()) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const check = (): void => { if (predicate()) { clearTimeout(timer); catalog.off('change', check); resolve() } }
    const timer = setTimeout(() => { catalog.off('change', check); reject(new Error(`catalog condition not met in ${ms} ms`)) }, ms)
    catalog.on('change', check)
  })
}

/** A pod with annotations (the harness's pod() has none). */
const annotatedPod = (p: ReturnType<typeof pod>, annotations: Record<string, string>): ReturnType<typeof pod> => ({ ...p, metadata: { ...p.metadata, annotations } })
const noEffect = (kind: string, key: string, annotation: string, comesWith: string): string =>
  `${kind} ${key}: annotation ${annotation} has no effect on the control plane (${comesWith})`

const hosts = (catalog: Catalog, key = 'web.demo:80'): string[] | undefined => catalog.lookup(key)?.service.endpoints.map((e) => e.address.host)

t.test('initial sync: lists all three, builds the catalog, then marks it synced', async (t) => {
  const { api, catalog, source } = await setup(t)
  api.apply(service('demo', 'api', { ports: [{ name: 'grpc', port: 9090, appProtocol: 'grpc' }], clusterIP: '10.96.0.20' }))
  api.apply(endpointSlice('demo', 'api-1', 'api', { ports: [{ name: 'grpc', port: 9090 }], endpoints: [ep('10.0.0.3', 'web-3')] }))
  let sizeAtSync = -1
  catalog.on('synced', () => { sizeAtSync = catalog.size })
  await source.start(catalog)
  t.ok(catalog.synced)
  t.equal(sizeAtSync, 2, 'the full catalog was there before synced')
  t.equal(catalog.source, 'kubernetes')
  t.same(catalog.lookup('web.demo.svc.cluster.local:80')?.service.endpoints.map((e) => e.key), ['10.0.0.1:15006/8080', '10.0.0.2:15006/8080'])
  t.equal(catalog.lookup('api.demo:9090')?.service.protocol, 'grpc')
  t.equal(catalog.lookup('web.demo:80')?.service.endpoints[0].identity, 'spiffe://cluster.local/ns/demo/sa/web')
  t.equal(catalog.lookup('10.96.0.20:9090')?.key, 'api.demo:9090', 'the cluster IP with the port finds the service')
  t.equal(catalog.lookup('10.0.0.3:9090')?.key, 'api.demo:9090', 'so does a pod IP with its target port')
  t.equal(catalog.lookup('10.0.0.1:8080')?.key, 'web.demo:80')
  t.same(['services', 'endpointslices', 'pods'].map((r) => api.count('list', r as 'pods')), [1, 1, 1])
  await api.waitFor(() => api.watchers() === 3)
  t.ok(api.requests.filter((r) => r.verb === 'watch').every((r) => r.query.allowWatchBookmarks === 'true'), 'watches ask for bookmarks')
})

t.test('slice changes reach the catalog quickly: scale up, not ready, draining, scale down', async (t) => {
  const { api, catalog, source } = await setup(t)
  await source.start(catalog)
  const rev = catalog.revision
  const t0 = performance.now()
  api.apply(webSlice(ep('10.0.0.1', 'web-1'), ep('10.0.0.2', 'web-2'), ep('10.0.0.3', 'web-3')))
  await until(catalog, () => hosts(catalog)?.length === 3)
  t.ok(performance.now() - t0 < 1000, `scale-up applied in ${Math.round(performance.now() - t0)} ms`)
  t.ok(catalog.revision > rev, 'new revision')
  t.ok((catalog.lookup('web.demo:80')?.version ?? 0) > rev)

  api.apply(webSlice(ep('10.0.0.1', 'web-1'), ep('10.0.0.2', 'web-2', { ready: false, serving: true, terminating: false }), ep('10.0.0.3', 'web-3')))
  await until(catalog, () => hosts(catalog)?.join() === '10.0.0.1,10.0.0.3')
  t.pass('a not-ready endpoint is removed')

  const draining = { ready: false, serving: true, terminating: true }
  api.apply(webSlice(ep('10.0.0.1', 'web-1', draining), ep('10.0.0.3', 'web-3', { ready: false, serving: false, terminating: true })))
  await until(catalog, () => hosts(catalog)?.join() === '10.0.0.1')
  t.pass('nothing ready: the serving, terminating endpoint drains')

  api.apply(webSlice())
  await until(catalog, () => hosts(catalog)?.length === 0)
  t.ok(catalog.lookup('web.demo:80'), 'a service with no endpoints stays known')
})

t.test('Service deleted or port removed → its catalog entries go', async (t) => {
  const { api, catalog, source } = await setup(t)
  api.apply(service('demo', 'web', { ports: [{ name: 'http', port: 80 }, { name: 'admin', port: 9000 }] }))
  await source.start(catalog)
  t.ok(catalog.lookup('web.demo:9000'))
  api.apply(service('demo', 'web'))
  await until(catalog, () => catalog.lookup('web.demo:9000') === undefined)
  t.ok(catalog.lookup('web.demo:80'), 'the other port stays')
  api.remove('Service', 'demo', 'web')
  await until(catalog, () => catalog.size === 0)
  api.apply(service('demo', 'web'))
  await until(catalog, () => hosts(catalog)?.length === 2)
  t.pass('recreated Service finds its slices again')
})

t.test('pod service account change recomputes the identity; a pod seen late adds its endpoint', async (t) => {
  const { api, catalog, source } = await setup(t)
  await source.start(catalog)
  api.apply(pod('demo', 'web-1', { serviceAccountName: 'web-v2', ip: '10.0.0.1' }))
  await until(catalog, () => catalog.lookup('web.demo:80')?.service.endpoints[0].identity === 'spiffe://cluster.local/ns/demo/sa/web-v2')
  api.apply(webSlice(ep('10.0.0.1', 'web-1'), ep('10.0.0.3', 'web-3'), ep('10.0.0.9', 'web-9')))
  await until(catalog, () => hosts(catalog)?.includes('10.0.0.3') === true)
  t.same(hosts(catalog), ['10.0.0.1', '10.0.0.3'], 'endpoint of an unseen pod waits')
  api.apply(pod('demo', 'web-9', { serviceAccountName: 'web', ip: '10.0.0.9' }))
  await until(catalog, () => hosts(catalog)?.length === 3)
})

t.test('410 Gone after compaction: relists, and applies what changed while disconnected (deletions too)', async (t) => {
  const { api, catalog, source } = await setup(t)
  api.apply(service('demo', 'old'))
  api.apply(endpointSlice('demo', 'old-1', 'old', { endpoints: [ep('10.0.0.4', 'web-4')] }))
  await source.start(catalog)
  await api.waitFor(() => api.watchers() === 3)
  t.ok(catalog.lookup('old.demo:80'))
  api.holdWatches()
  api.dropWatches()
  await api.waitFor(() => api.heldWatches() === 3)
  api.remove('Service', 'demo', 'old')
  api.remove('EndpointSlice', 'demo', 'old-1')
  api.apply(webSlice(ep('10.0.0.3', 'web-3')))
  api.apply(service('demo', 'new'))
  api.compact()
  const lists = api.count('list')
  api.releaseWatches()
  await until(catalog, () => catalog.lookup('old.demo:80') === undefined && catalog.lookup('new.demo:80') !== undefined && hosts(catalog)?.join() === '10.0.0.3')
  t.equal(api.count('list'), lists + 3, 'each informer relisted once')
  t.ok(api.requests.some((r) => r.expired === true), 'the server did answer 410')
  await api.waitFor(() => api.watchers() === 3)
  api.apply(webSlice(ep('10.0.0.1', 'web-1')))
  await until(catalog, () => hosts(catalog)?.join() === '10.0.0.1')
  t.pass('watching again after the relist')
})

t.test('watch drops, clean or abrupt: resumes from its resourceVersion without relisting', async (t) => {
  const { api, catalog, source } = await setup(t)
  await source.start(catalog)
  await api.waitFor(() => api.watchers() === 3)
  const lists = api.count('list')
  for (const abrupt of [false, true]) {
    api.dropWatches({ abrupt })
    api.apply(webSlice(ep('10.0.0.' + (abrupt ? '3' : '4'), abrupt ? 'web-3' : 'web-4')))
    await until(catalog, () => hosts(catalog)?.join() === (abrupt ? '10.0.0.3' : '10.0.0.4'))
    await api.waitFor(() => api.watchers() === 3)
  }
  t.equal(api.count('list'), lists, 'no relist')
})

t.test('API errors: list and watch failures are retried with backoff, counted, and recover', async (t) => {
  const { api, catalog, source, errors, logs } = await setup(t, { before: (api) => api.fail(2, 500, { verb: 'list', resource: 'endpointslices' }) })
  await source.start(catalog)
  t.same(hosts(catalog), ['10.0.0.1', '10.0.0.2'], 'synced after the list failures')
  t.same(errors, ['endpointslices', 'endpointslices'])
  t.ok(logs.some((l) => l.level === 40 && /list\/watch of endpointslices failed: .*500/.test(l.msg)), 'logged with status')
  await api.waitFor(() => api.watchers() === 3)
  api.fail(3, 503, { verb: 'watch' })
  api.dropWatches()
  await api.waitFor(() => api.requests.filter((r) => r.verb === 'watch' && r.status === 503).length === 3)
  api.apply(webSlice(ep('10.0.0.3', 'web-3')))
  await until(catalog, () => hosts(catalog)?.join() === '10.0.0.3')
  t.equal(errors.length, 5, 'each failed watch counted')
  const retries = logs.filter((l) => typeof l.retryInMs === 'number').map((l) => l.retryInMs as number)
  t.ok(retries.every((ms) => ms >= 0 && ms <= 200), `backoff within the cap: ${retries.join(', ')}`)
})

t.test('a malformed object is logged once with its name and field; the rest keeps working', async (t) => {
  const { api, catalog, source, logs, errors, untilLogged } = await setup(t)
  api.apply(service('demo', 'api'))
  await source.start(catalog)
  api.applyRaw({ ...endpointSlice('demo', 'api-x1', 'api'), endpoints: { not: 'a list' } })
  api.applyRaw({ ...service('demo', 'bad'), spec: { ports: [{ name: 'http', port: 'eighty' }] } })
  await untilLogged((lines) => lines.filter((l) => l.level === 40).length >= 2)
  const warned = logs.filter((l) => l.level === 40).map((l) => l.msg).sort()
  t.same(warned, [
    'EndpointSlice demo/api-x1: endpoints: expected a list, got {"not":"a list"}',
    'Service demo/bad: spec.ports[0].port: expected a port number 1-65535, got "eighty"',
  ])
  t.same(errors, ['malformed', 'malformed'])
  api.apply(endpointSlice('demo', 'api-x2', 'api', { endpoints: [ep('10.0.0.4', 'web-4')] }))
  await until(catalog, () => hosts(catalog, 'api.demo:80')?.join() === '10.0.0.4')
  api.apply(webSlice(ep('10.0.0.3', 'web-3')))
  await until(catalog, () => hosts(catalog)?.join() === '10.0.0.3')
  t.equal(logs.filter((l) => l.level === 40).length, 2, 'not logged again on recompute')
})

t.test('annotations with no effect yet: one warning per Service or Pod and annotation, not again on updates or a relist; the gauge follows', async (t) => {
  const web1 = (opts: { sa?: string, ip?: string, annotations?: Record<string, string> }) =>
    annotatedPod(pod('demo', 'web-1', { serviceAccountName: opts.sa ?? 'web', ip: opts.ip ?? '10.0.0.1' }), opts.annotations ?? {})
  const { api, catalog, source, logs, errors, gauge, untilLogged, untilGauge } = await setup(t, {
    before: (api) => {
      api.apply(service('demo', 'web', { annotations: { 'remora.dev/inject': 'enabled', 'remora.dev/proxy-image': 'remora:next', 'remora.dev/opaque-ports': '5432', 'remora.dev/timeout': '2s' } }))
      api.apply(web1({ annotations: { 'remora.dev/inject': 'enabled', 'remora.dev/skip-outbound-ports': '3306', 'remora.dev/default-policy': 'deny', 'remora.dev/allow': '8080=ns:demo' } }))
    },
  })
  const warnings = (): string[] => logs.filter((l) => l.level === 40).map((l) => l.msg).sort()
  await source.start(catalog)
  await untilLogged(() => warnings().length >= 3)
  t.same(warnings(), [
    noEffect('Pod', 'demo/web-1', 'remora.dev/inject', 'it is read once, when a pod is created: by the admission webhook (remora control, remora injector) or by remora inject; put it on the pod template, or label the namespace'),
    noEffect('Service', 'demo/web', 'remora.dev/inject', 'it is read once, when a pod is created: by the admission webhook (remora control, remora injector) or by remora inject; put it on the pod template, or label the namespace'),
    noEffect('Service', 'demo/web', 'remora.dev/proxy-image', 'it is read once, when a pod is created: by the admission webhook (remora control, remora injector) or by remora inject; put it on the pod template'),
  ], 'opaque-ports, skip-outbound-ports, default-policy and allow (they have an effect) are not warned about')
  t.same(logs.filter((l) => l.level === 40).map((l) => `${String(l.service ?? l.pod)} ${String(l.annotation)}`).sort(),
    ['demo/web remora.dev/inject', 'demo/web remora.dev/proxy-image', 'demo/web-1 remora.dev/inject'], 'object and annotation as fields too')
  t.same(errors, [], 'warnings, not errors: the source-errors metric does not count them')
  t.same(Object.fromEntries(gauge), { 'Service remora.dev/inject': 1, 'Service remora.dev/proxy-image': 1, 'Pod remora.dev/inject': 1 })
  t.equal(catalog.lookup('web.demo:80')?.service.policy.requestTimeoutMs, 2000, 'the policy annotations still apply')

  // Updates of the same objects: the Service (another timeout, one annotation fewer), the pod's
  // status, then its service account (each pod event is handled in order, so the last one seen
  // in the catalog means the others were handled too).
  api.apply(service('demo', 'web', { annotations: { 'remora.dev/inject': 'enabled', 'remora.dev/opaque-ports': '5432', 'remora.dev/timeout': '3s' } }))
  await until(catalog, () => catalog.lookup('web.demo:80')?.service.policy.requestTimeoutMs === 3000)
  api.apply(web1({ ip: '10.0.0.11', annotations: { 'remora.dev/inject': 'enabled' } }))
  api.apply(web1({ sa: 'web-v2', ip: '10.0.0.11', annotations: { 'remora.dev/inject': 'enabled' } }))
  await until(catalog, () => catalog.lookup('web.demo:80')?.service.endpoints[0].identity === 'spiffe://cluster.local/ns/demo/sa/web-v2')
  // A relist (410 after the watches dropped) sees every object again.
  await api.waitFor(() => api.watchers() === 3)
  api.holdWatches()
  api.dropWatches()
  await api.waitFor(() => api.heldWatches() === 3)
  api.apply(webSlice(ep('10.0.0.3', 'web-3')))
  api.compact()
  api.releaseWatches()
  await until(catalog, () => hosts(catalog)?.join() === '10.0.0.3')
  t.ok(api.requests.some((r) => r.expired === true), 'the informers relisted')
  t.equal(warnings().length, 3, 'not logged again on updates or the relist')
  t.same(Object.fromEntries(gauge), { 'Service remora.dev/inject': 1, 'Service remora.dev/proxy-image': 0, 'Pod remora.dev/inject': 1 }, 'the removed annotation went down')

  // Removed from the pod, then the Service deleted: the gauge goes to 0. Added again: logged again.
  api.apply(web1({ sa: 'web-v2', ip: '10.0.0.11' }))
  await untilGauge((g) => g.get('Pod remora.dev/inject') === 0)
  api.remove('Service', 'demo', 'web')
  await untilGauge((g) => g.get('Service remora.dev/inject') === 0)
  t.ok([...gauge.values()].every((n) => n === 0), 'nothing carried any more')
  api.apply(web1({ sa: 'web-v2', ip: '10.0.0.11', annotations: { 'remora.dev/inject': 'enabled' } }))
  await untilLogged(() => warnings().length === 4)
  t.equal(gauge.get('Pod remora.dev/inject'), 1)
})

t.test('namespaces option: only those namespaces are watched; stop() closes every watch', async (t) => {
  const { api, catalog, source } = await setup(t, {
    namespaces: ['demo'],
    before: (api) => {
      api.apply(service('other', 'web'))
      api.apply(endpointSlice('other', 'web-1', 'web', { endpoints: [{ addresses: ['10.1.0.1'] }] }))
    },
  })
  await source.start(catalog)
  t.ok(catalog.lookup('web.demo:80'))
  t.equal(catalog.lookup('web.other:80'), undefined)
  t.ok(api.requests.filter((r) => r.verb === 'list').every((r) => r.namespace === 'demo'))
  await api.waitFor(() => api.watchers() === 3)
  await source.stop()
  await api.waitFor(() => api.watchers() === 0)
  t.pass('no watch left open')
})
