// Black-box, trust anchors in meshed namespaces: a real `remora control` with a CA keeps the ConfigMap
// remora-trust-anchors (root.pem: the CA's root) in every namespace labelled or annotated remora.dev/inject=enabled,
// there at start or meshed later; an edited or deleted one is put back; an unmeshed namespace gets nothing, and one
// that stops being meshed keeps what it has, no longer managed.
import t from 'tap'
import { X509Certificate } from 'node:crypto'
import { configMap, namespace, type KubeObject } from '../harness/kube-api.ts'
import { metric } from '../harness/metrics.ts'
import { START_TIMEOUT_MS } from '../harness/ready.ts'
import { CertificateAuthority } from '../../src/identity/ca.ts'
import { CA_NAMESPACE, CA_SECRET, cluster, controlPlane, logged, served } from './kube-helpers.ts'

const CM = 'remora-trust-anchors'
const MESHED = { 'remora.dev/inject': 'enabled' }

t.test('the root reaches every meshed namespace, stays there as it should be, and nowhere else', async (t) => {
  const c = await cluster(t)
  const { kube } = c
  const own = (await CertificateAuthority.create({ trustDomain: 'cluster.local' })).export()
  kube.apply(namespace(CA_NAMESPACE))
  kube.putSecret(CA_NAMESPACE, CA_SECRET, { 'root.pem': own.rootPem, 'issuer.pem': own.issuerPem, 'issuer-key.pem': own.issuerKeyPem })
  kube.apply(namespace('shop', { labels: MESHED }))
  kube.apply(namespace('billing', { annotations: MESHED }))
  kube.apply(namespace('plain'))
  kube.apply(namespace('off', { labels: { 'remora.dev/inject': 'disabled' } }))

  const rootIn = (ns: string): string | undefined => (kube.get('ConfigMap', ns, CM)?.data as Record<string, string> | undefined)?.['root.pem']
  const current = (ns: string): boolean => {
    const cm = kube.get('ConfigMap', ns, CM)
    return cm !== undefined && rootIn(ns) === own.rootPem && Object.keys(cm.data as object).length === 1 && cm.metadata.labels?.['app.kubernetes.io/managed-by'] === 'remora'
  }
  const until = (what: string, predicate: () => boolean): Promise<void> =>
    kube.waitFor(predicate, START_TIMEOUT_MS).catch((err: Error) => { throw new Error(`${what}: ${err.message}`) })

  const cp = controlPlane(t, c, `secret:${CA_NAMESPACE}/${CA_SECRET}`)
  await cp.start()
  await until('shop and billing get the root', () => current('shop') && current('billing'))
  t.pass('a labelled and an annotated namespace get the ConfigMap')
  const shopMap = kube.get('ConfigMap', 'shop', CM) as KubeObject
  t.ok(new X509Certificate((shopMap.data as Record<string, string>)['root.pem']).ca, 'root.pem is a CA certificate')
  t.ok((await served(cp, rootIn('shop') as string)).authorized, "it verifies the control plane's discovery port, as a sidecar would")
  t.match(await logged(cp, /^trust anchors published: created ConfigMap shop\//), { namespace: 'shop' })

  // Meshed later: labelled after the start, or created labelled.
  kube.apply(namespace('later'))
  kube.apply(namespace('later', { labels: MESHED }))
  kube.apply(namespace('new', { labels: MESHED }))
  await until('later and new get the root', () => current('later') && current('new'))
  t.pass('namespaces meshed after the start get it too')

  // Edited (data changed, a key added), or deleted: put back.
  kube.apply(configMap('shop', CM, { 'root.pem': 'edited' }, { labels: { 'app.kubernetes.io/managed-by': 'remora', team: 'shop' } }))
  await until('the edited root.pem is put back', () => current('shop'))
  t.equal(kube.get('ConfigMap', 'shop', CM)?.metadata.labels?.team, 'shop', 'labels others added are kept')
  kube.apply(configMap('billing', CM, { 'root.pem': own.rootPem, extra: 'x' }, { labels: { 'app.kubernetes.io/managed-by': 'remora' } }))
  await until('the added key is removed', () => current('billing'))
  kube.remove('ConfigMap', 'new', CM)
  await until('the deleted ConfigMap is created again', () => current('new'))
  t.pass('edited and deleted ConfigMaps are put back')
  await logged(cp, /^trust anchors published: ConfigMap shop\/remora-trust-anchors differed/)

  // No longer meshed: the ConfigMap stays as it is, and is no longer managed.
  kube.apply(namespace('later'))
  await logged(cp, /^namespace later is no longer meshed/)
  kube.apply(configMap('later', CM, { 'root.pem': 'edited after' }))
  // A sentinel on the same ConfigMap watch, after that edit: once it is put back, the edit above was seen.
  kube.apply(configMap('shop', CM, { 'root.pem': 'edited again' }))
  await until('the sentinel is put back', () => current('shop'))
  t.equal(rootIn('later'), 'edited after', 'a namespace that is no longer meshed is left alone')

  t.same(kube.all('ConfigMap', 'plain'), [], 'an unlabelled namespace gets nothing')
  t.same(kube.all('ConfigMap', 'off'), [], 'nor one labelled disabled')
  t.same(kube.requests.filter((r) => r.resource === 'configmaps' && (r.verb === 'create' || r.verb === 'update') && ['plain', 'off', CA_NAMESPACE].includes(r.namespace ?? '')), [], 'not even tried')
  t.equal(await metric(cp.adminUrl, 'remora_control_trust_anchor_writes_total', { action: 'create', result: 'ok' }), 5, 'shop, billing, later, new, and new again')
  t.equal(await metric(cp.adminUrl, 'remora_control_trust_anchor_writes_total', { action: 'update', result: 'ok' }), 3, 'shop twice, billing once')
  t.equal(await metric(cp.adminUrl, 'remora_control_trust_anchor_writes_total', { action: 'create', result: 'error' }), 0)

  // Another CA (the user replaced the Secret) after a restart: every meshed namespace gets the new root.
  await cp.stop()
  const next = (await CertificateAuthority.create({ trustDomain: 'cluster.local' })).export()
  kube.putSecret(CA_NAMESPACE, CA_SECRET, { 'root.pem': next.rootPem, 'issuer.pem': next.issuerPem, 'issuer-key.pem': next.issuerKeyPem })
  await cp.start()
  await until('the new root everywhere meshed', () => ['shop', 'billing', 'new'].every((ns) => rootIn(ns) === next.rootPem))
  t.pass('new roots replace the old in every meshed namespace')
  t.equal(rootIn('later'), 'edited after', 'but not in one no longer meshed')
})

t.test('a failed write is retried; two control planes with the same CA write each ConfigMap once', async (t) => {
  const c = await cluster(t)
  const { kube } = c
  kube.apply(namespace(CA_NAMESPACE))
  kube.apply(namespace('shop', { labels: MESHED }))
  kube.fail(2, 500, { verb: 'create', resource: 'configmaps' })
  const a = controlPlane(t, c, `secret-or-create:${CA_NAMESPACE}/${CA_SECRET}`, { REMORA_LOG_LEVEL: 'info' })
  await a.start()
  await kube.waitFor(() => kube.get('ConfigMap', 'shop', CM) !== undefined, START_TIMEOUT_MS)
  t.match(await logged(a, /^trust anchors not published in namespace shop/), { attempt: 1 })
  t.equal(await metric(a.adminUrl, 'remora_control_trust_anchor_writes_total', { action: 'create', result: 'error' }), 2, 'two failures counted, then created')

  const b = controlPlane(t, c, `secret-or-create:${CA_NAMESPACE}/${CA_SECRET}`)
  await b.start()
  await logged(b, /^trust anchors: meshed namespaces listed/)
  kube.apply(namespace('cart', { labels: MESHED }))
  const root = kube.secretData(CA_NAMESPACE, CA_SECRET)?.['root.pem']
  await kube.waitFor(() => (kube.get('ConfigMap', 'cart', CM)?.data as Record<string, string> | undefined)?.['root.pem'] === root, START_TIMEOUT_MS)
  kube.apply(configMap('cart', CM, { 'root.pem': 'edited' }, { labels: { 'app.kubernetes.io/managed-by': 'remora' } }))
  await kube.waitFor(() => (kube.get('ConfigMap', 'cart', CM)?.data as Record<string, string> | undefined)?.['root.pem'] === root, START_TIMEOUT_MS)
  // Both saw each event; whichever wrote second found it done (409, then equal): no flapping between them.
  const writes = kube.requests.filter((r) => r.resource === 'configmaps' && r.namespace === 'cart' && (r.verb === 'create' || r.verb === 'update') && r.status < 300)
  t.same(writes.map((r) => r.verb), ['create', 'update'], 'one create and one put-back succeeded, whoever made them')
})
