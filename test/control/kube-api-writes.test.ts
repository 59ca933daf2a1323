// The stand-in API's Namespaces, ConfigMaps and Secrets, proven with the real @kubernetes/client-node: list and watch
// with selectors (informers), get, create and replace with the server's answers (201, 404, 409 AlreadyExists,
// 409 Conflict), and held requests for races. What test/harness/kube-api.test.ts shows for the rest still holds.
import t from 'tap'
import { CoreV1Api, makeInformer, type V1ConfigMap, type V1Namespace } from '@kubernetes/client-node'
import { FakeKubeApi, configMap, namespace } from '../harness/kube-api.ts'
import type { Teardown } from '../harness/mesh.ts'

async function setup (t: Teardown): Promise<{ api: FakeKubeApi, core: CoreV1Api }> {
  const api = await FakeKubeApi.start()
  t.teardown(() => api.close())
  return { api, core: api.kubeConfig().makeApiClient(CoreV1Api) }
}

/** An ApiException as `{ code, status }`, the Status parsed from its body. */
async function apiError (p: Promise<unknown>): Promise<{ code: number, status: Record<string, unknown> }> {
  try {
    await p
  } catch (err) {
    const { code, body } = err as { code: number, body: unknown }
    return { code, status: typeof body === 'string' ? JSON.parse(body) as Record<string, unknown> : {} }
  }
  throw new Error('expected the call to fail')
}

t.test('Namespaces: cluster-scoped, listed, read and watched with a label selector by an informer', async (t) => {
  const { api, core } = await setup(t)
  api.apply(namespace('shop', { labels: { 'remora.dev/inject': 'enabled' } }))
  api.apply(namespace('plain'))
  t.match(await core.readNamespace({ name: 'shop' }), { metadata: { name: 'shop', labels: { 'kubernetes.io/metadata.name': 'shop', 'remora.dev/inject': 'enabled' } }, status: { phase: 'Active' } })
  t.same((await core.listNamespace()).items.map((n) => n.metadata?.name), ['plain', 'shop'])
  t.match(await apiError(core.readNamespace({ name: 'nope' })), { code: 404, status: { reason: 'NotFound', message: 'namespaces "nope" not found' } })

  const path = '/api/v1/namespaces'
  const informer = makeInformer<V1Namespace>(api.kubeConfig(), path, () => core.listNamespace({ labelSelector: 'remora.dev/inject=enabled' }), 'remora.dev/inject=enabled')
  const seen: string[] = []
  let three = (): void => {}
  const sawThree = new Promise<void>((resolve) => { three = resolve })
  const saw = (what: string): void => { seen.push(what); if (seen.length === 3) three() }
  informer.on('add', (n) => saw(`add ${n.metadata?.name}`))
  informer.on('delete', (n) => saw(`delete ${n.metadata?.name}`))
  await informer.start()
  t.teardown(() => informer.stop())
  await api.waitFor(() => api.watchers('namespaces') === 1)
  api.apply(namespace('plain', { labels: { 'remora.dev/inject': 'enabled' } }))
  api.apply(namespace('shop'))
  await sawThree
  t.same(seen, ['add shop', 'add plain', 'delete shop'], 'a namespace entering and leaving the selection')
  t.match(api.requests.find((r) => r.verb === 'watch'), { resource: 'namespaces', namespace: undefined, query: { labelSelector: 'remora.dev/inject=enabled' } })
})

t.test('ConfigMaps: create (201, then 409 AlreadyExists), get (404), replace (409 Conflict on a stale resourceVersion), list by name', async (t) => {
  const { api, core } = await setup(t)
  api.apply(namespace('shop'))
  const body: V1ConfigMap = { metadata: { name: 'anchors', labels: { a: 'b' } }, data: { 'root.pem': 'one' } }
  t.match(await apiError(core.readNamespacedConfigMap({ namespace: 'shop', name: 'anchors' })), { code: 404, status: { reason: 'NotFound', message: 'configmaps "anchors" not found', details: { name: 'anchors', kind: 'configmaps' } } })
  const created = await core.createNamespacedConfigMap({ namespace: 'shop', body })
  t.match(created, { kind: 'ConfigMap', metadata: { name: 'anchors', namespace: 'shop', uid: /./, resourceVersion: /^\d+$/ }, data: { 'root.pem': 'one' } })
  t.match(api.requests.at(-1), { verb: 'create', resource: 'configmaps', namespace: 'shop', status: 201 })
  t.match(await apiError(core.createNamespacedConfigMap({ namespace: 'shop', body })), { code: 409, status: { reason: 'AlreadyExists', message: 'configmaps "anchors" already exists' } })
  t.match(await apiError(core.createNamespacedConfigMap({ namespace: 'gone', body })), { code: 404, status: { message: 'namespaces "gone" not found' } })
  t.match(await apiError(core.createNamespacedConfigMap({ namespace: 'shop', body: { ...body, metadata: { name: 'x', namespace: 'other' } } })), { code: 400 })
  t.match(await apiError(core.createNamespacedConfigMap({ namespace: 'shop', body: { data: {} } })), { code: 422, status: { reason: 'Invalid' } })

  const read = await core.readNamespacedConfigMap({ namespace: 'shop', name: 'anchors' })
  const replaced = await core.replaceNamespacedConfigMap({ namespace: 'shop', name: 'anchors', body: { ...read, data: { 'root.pem': 'two' } } })
  t.equal(replaced.data?.['root.pem'], 'two')
  t.equal(replaced.metadata?.uid, created.metadata?.uid, 'the same object')
  t.not(replaced.metadata?.resourceVersion, read.metadata?.resourceVersion, 'a new resourceVersion')
  t.match(await apiError(core.replaceNamespacedConfigMap({ namespace: 'shop', name: 'anchors', body: { ...read, data: { 'root.pem': 'stale' } } })),
    { code: 409, status: { reason: 'Conflict', message: /the object has been modified/ } }, 'a replace at an old resourceVersion')
  const unconditional = await core.replaceNamespacedConfigMap({ namespace: 'shop', name: 'anchors', body: { metadata: { name: 'anchors' }, data: { 'root.pem': 'three' } } })
  t.equal(unconditional.data?.['root.pem'], 'three', 'without a resourceVersion the replace is unconditional')
  t.match(await apiError(core.replaceNamespacedConfigMap({ namespace: 'shop', name: 'nope', body: { metadata: { name: 'nope' } } })), { code: 404 })
  t.match(await apiError(core.replaceNamespacedConfigMap({ namespace: 'shop', name: 'anchors', body: { metadata: { name: 'other' } } })), { code: 400, status: { message: /does not match the name on the URL/ } })

  api.apply(configMap('cart', 'anchors', { 'root.pem': 'x' }))
  api.apply(configMap('cart', 'unrelated', { k: 'v' }))
  const named = await core.listConfigMapForAllNamespaces({ fieldSelector: 'metadata.name=anchors' })
  t.same(named.items.map((c) => `${c.metadata?.namespace}/${c.metadata?.name}`), ['cart/anchors', 'shop/anchors'], 'listed across namespaces by name')
})

t.test('Secrets: read, create (stringData merged into data), 409 when present; held creates race', async (t) => {
  const { api, core } = await setup(t)
  api.apply(namespace('remora-system'))
  api.putSecret('remora-system', 'ca', { 'root.pem': 'R' }, { labels: { owner: 'me' } })
  t.match(await core.readNamespacedSecret({ namespace: 'remora-system', name: 'ca' }), { type: 'Opaque', metadata: { labels: { owner: 'me' } }, data: { 'root.pem': Buffer.from('R').toString('base64') } })
  t.match(await apiError(core.createNamespacedSecret({ namespace: 'remora-system', body: { metadata: { name: 'ca' }, data: {} } })), { code: 409, status: { reason: 'AlreadyExists', message: 'secrets "ca" already exists' } })
  t.match(await apiError(core.readNamespacedSecret({ namespace: 'remora-system', name: 'nope' })), { code: 404, status: { message: 'secrets "nope" not found' } })
  const made = await core.createNamespacedSecret({ namespace: 'remora-system', body: { metadata: { name: 'new' }, stringData: { a: 'x' }, data: { b: Buffer.from('y').toString('base64') } } })
  t.match(made, { type: 'Opaque', data: { a: Buffer.from('x').toString('base64'), b: Buffer.from('y').toString('base64') } })
  t.notOk('stringData' in (api.get('Secret', 'remora-system', 'new') ?? {}), 'stringData is write-only')
  t.same(api.secretData('remora-system', 'new'), { a: 'x', b: 'y' })
  t.throws(() => api.apply({ kind: 'Secret', metadata: { name: 'x' } }), /kind must be/, 'Secrets go in with putSecret, not apply')

  api.holdRequests({ verb: 'create', resource: 'secrets' })
  const racers = ['one', 'two'].map((v) => core.createNamespacedSecret({ namespace: 'remora-system', body: { metadata: { name: 'race' }, stringData: { v } } }).then(() => 201, (e: { code: number }) => e.code))
  await api.waitFor(() => api.heldRequests() === 2)
  t.equal(api.get('Secret', 'remora-system', 'race'), undefined, 'held: nothing created yet')
  t.equal(await core.readNamespacedSecret({ namespace: 'remora-system', name: 'ca' }).then(() => 'read'), 'read', 'other requests are served meanwhile')
  api.releaseRequests()
  t.same(await Promise.all(racers), [201, 409], 'released in arrival order: the first wins')
  t.same(api.secretData('remora-system', 'race'), { v: 'one' })
})
