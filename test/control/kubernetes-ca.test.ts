// Black-box, the CA in the cluster: REMORA_CA=secret-or-create: makes the CA once, on the first start, and stores it
// in a Secret with a create; every later control plane (and one that raced it) uses that CA; a user's own Secret
// is used as it is and never written, and secret: never creates one.
import t from 'tap'
import { X509Certificate, createPrivateKey } from 'node:crypto'
import { namespace } from '../harness/kube-api.ts'
import { CertificateAuthority } from '../../src/identity/ca.ts'
import { CA_NAMESPACE, CA_SECRET, cluster, controlPlane, der, logged, loggedLines, served } from './kube-helpers.ts'
import { START_TIMEOUT_MS } from '../harness/ready.ts'

const CREATE = `secret-or-create:${CA_NAMESPACE}/${CA_SECRET}`
const KEYS = ['issuer-key.pem', 'issuer.pem', 'root.pem']

t.test('first start creates the CA Secret; the next control plane uses the same CA', async (t) => {
  const c = await cluster(t)
  const { kube } = c
  kube.apply(namespace(CA_NAMESPACE))
  kube.apply(namespace('shop', { labels: { 'remora.dev/inject': 'enabled' } }))

  const first = controlPlane(t, c, CREATE)
  await first.start()
  const created = await logged(first, /^created the mesh CA/)
  t.match(created, { secret: `${CA_NAMESPACE}/${CA_SECRET}`, created: true })
  const secret = kube.get('Secret', CA_NAMESPACE, CA_SECRET)
  t.match(secret, { type: 'Opaque', metadata: { labels: { 'app.kubernetes.io/managed-by': 'remora' } } }, 'an Opaque Secret, labelled as remora made it')
  const pem = kube.secretData(CA_NAMESPACE, CA_SECRET) ?? {}
  t.same(Object.keys(pem).sort(), KEYS)
  t.same(kube.requests.filter((r) => r.resource === 'secrets' && r.verb === 'create').map((r) => r.status), [201], 'one create')

  const root = new X509Certificate(pem['root.pem'])
  const issuer = new X509Certificate(pem['issuer.pem'])
  t.ok(root.ca && root.verify(root.publicKey), 'root.pem is a self-signed CA certificate')
  t.ok(issuer.ca && issuer.verify(root.publicKey), 'issuer.pem is a CA the root signed')
  t.ok(issuer.checkPrivateKey(createPrivateKey(pem['issuer-key.pem'])), "issuer-key.pem is the issuer's key")
  t.match(created, { ca: { roots: [{ sha256: root.fingerprint256.replace(/:/g, '').toLowerCase() }] } }, 'the log names the root by its fingerprint')
  t.notMatch(first.output, /PRIVATE KEY/, 'the key is never logged')

  const firstServes = await served(first, pem['root.pem'])
  t.ok(firstServes.authorized, `the discovery port chains to the Secret's root (${firstServes.authorizationError ?? 'ok'})`)
  t.same(firstServes.issuer, issuer.raw, "and is signed by the Secret's issuer")

  // A sidecar in a meshed namespace gets that root from the ConfigMap the control plane publishes there.
  await kube.waitFor(() => kube.get('ConfigMap', 'shop', 'remora-trust-anchors') !== undefined, START_TIMEOUT_MS)
  const anchors = (kube.get('ConfigMap', 'shop', 'remora-trust-anchors')?.data as Record<string, string>)['root.pem']
  t.equal(anchors, pem['root.pem'], "the ConfigMap's root.pem is the Secret's")
  t.ok((await served(first, anchors)).authorized, 'and verifies the control plane a sidecar talks to')

  const rv = secret?.metadata.resourceVersion
  await first.stop()
  const second = controlPlane(t, c, CREATE)
  await second.start()
  t.match(await logged(second, /^using the CA in Secret/), { created: false }, 'the next start reads the Secret')
  t.match(loggedLines(second, /^using the CA/)[0].msg, /created by a remora control plane/)
  t.equal(loggedLines(second, /^created the mesh CA/).length, 0)
  t.equal(kube.count('create', 'secrets'), 1, 'and creates nothing')
  t.equal(kube.get('Secret', CA_NAMESPACE, CA_SECRET)?.metadata.resourceVersion, rv, 'the Secret is unchanged')
  const secondServes = await served(second, pem['root.pem'])
  t.ok(secondServes.authorized, 'the same root')
  t.same(secondServes.issuer, issuer.raw, 'the same issuer')
})

t.test('two control planes starting together agree on one CA: the one whose create gets 409 uses the winner\'s', async (t) => {
  const c = await cluster(t)
  const { kube } = c
  kube.apply(namespace(CA_NAMESPACE))
  // Both creates are held until both have arrived, so both control planes read "no Secret" before either is created.
  kube.holdRequests({ verb: 'create', resource: 'secrets' })
  const planes = [controlPlane(t, c, CREATE), controlPlane(t, c, CREATE)]
  const started = Promise.all(planes.map((p) => p.start()))
  started.catch(() => {})
  await kube.waitFor(() => kube.heldRequests() === 2, START_TIMEOUT_MS)
  t.equal(kube.count('get', 'secrets'), 2, 'both read first, and found none')
  kube.releaseRequests()
  await started

  const creates = kube.requests.filter((r) => r.resource === 'secrets' && r.verb === 'create').map((r) => r.status).sort()
  t.same(creates, [201, 409], 'one create won, the other got 409 Conflict')
  const lines = await Promise.all(planes.map((p) => logged(p, /^(created the mesh CA|another control plane created Secret)/)))
  t.same(lines.map((l) => l.created).sort(), [false, true], 'one says it created the CA, the other that it uses the one created first')
  t.match(lines.find((l) => l.created === false)?.msg, /409 Conflict.*using its CA/)
  t.same(lines[0].ca, lines[1].ca, 'both log the same CA (root and issuer fingerprints)')

  const pem = kube.secretData(CA_NAMESPACE, CA_SECRET) ?? {}
  for (const [i, p] of planes.entries()) {
    const s = await served(p, pem['root.pem'])
    t.ok(s.authorized, `control plane ${i + 1} serves with the stored CA`)
    t.same(s.issuer, der(pem['issuer.pem']), `control plane ${i + 1} uses the stored issuer`)
  }
  t.equal(kube.count('update', 'secrets'), 0, 'nobody overwrote it')
})

t.test("a user's own CA Secret is used as it is and never written; secret: never creates one", async (t) => {
  const c = await cluster(t)
  const { kube } = c
  kube.apply(namespace(CA_NAMESPACE))
  kube.apply(namespace('shop', { labels: { 'remora.dev/inject': 'enabled' } }))
  const own = (await CertificateAuthority.create({ trustDomain: 'cluster.local' })).export()
  const stored = kube.putSecret(CA_NAMESPACE, CA_SECRET, { 'root.pem': own.rootPem, 'issuer.pem': own.issuerPem, 'issuer-key.pem': own.issuerKeyPem }, { labels: { owner: 'platform-team' } })

  for (const ca of [CREATE, `secret:${CA_NAMESPACE}/${CA_SECRET}`]) {
    const cp = controlPlane(t, c, ca)
    await cp.start()
    const line = await logged(cp, /^using the CA in Secret/)
    t.match(line, { secret: `${CA_NAMESPACE}/${CA_SECRET}` }, `${ca}: uses the Secret`)
    t.notMatch(line.msg, /created by a remora/, 'and does not take it for its own')
    const s = await served(cp, own.rootPem)
    t.ok(s.authorized, `${ca}: serves with the user's root`)
    t.same(s.issuer, der(own.issuerPem), `${ca}: and the user's issuer`)
    await kube.waitFor(() => (kube.get('ConfigMap', 'shop', 'remora-trust-anchors')?.data as Record<string, string> | undefined)?.['root.pem'] === own.rootPem, START_TIMEOUT_MS)
    await cp.stop()
  }
  t.equal(kube.requests.filter((r) => r.resource === 'secrets' && r.verb !== 'get').length, 0, 'only ever read')
  t.same(kube.get('Secret', CA_NAMESPACE, CA_SECRET), stored, 'the Secret is exactly as the user stored it')

  // secret: with no Secret fails, says why, and creates nothing.
  kube.remove('Secret', CA_NAMESPACE, CA_SECRET)
  const cp = controlPlane(t, c, `secret:${CA_NAMESPACE}/other-ca`)
  await t.rejects(cp.start(), /Secret remora-system\/other-ca not found.*secret-or-create:/s)
  t.equal(kube.count('create', 'secrets'), 0, 'secret: never creates')
})

t.test("a Secret as cert-manager writes it (ca.crt, tls.crt, tls.key) is read under those names", async (t) => {
  const c = await cluster(t)
  const { kube } = c
  kube.apply(namespace(CA_NAMESPACE))
  const own = (await CertificateAuthority.create({ trustDomain: 'cluster.local' })).export()
  // cert-manager's default encoding of an ECDSA key is SEC1 ("EC PRIVATE KEY").
  const sec1 = createPrivateKey(own.issuerKeyPem).export({ type: 'sec1', format: 'pem' }).toString()
  kube.putSecret(CA_NAMESPACE, 'remora-issuer', { 'ca.crt': own.rootPem, 'tls.crt': own.issuerPem, 'tls.key': sec1 }, { type: 'kubernetes.io/tls' })
  const cp = controlPlane(t, c, `secret:${CA_NAMESPACE}/remora-issuer`)
  await cp.start()
  const s = await served(cp, own.rootPem)
  t.ok(s.authorized, 'serves with ca.crt as the root')
  t.same(s.issuer, der(own.issuerPem), 'and tls.crt as the issuer')
})

t.test('a CA Secret that cannot be used stops the start with the reason, and is not overwritten', async (t) => {
  const c = await cluster(t)
  const { kube } = c
  kube.apply(namespace(CA_NAMESPACE))
  kube.putSecret(CA_NAMESPACE, CA_SECRET, { 'root.pem': 'not a certificate' })
  const cp = controlPlane(t, c, CREATE)
  await t.rejects(cp.start(), /Secret remora-system\/remora-ca has no key "issuer.pem"/)
  t.equal(kube.count('create', 'secrets') + kube.count('update', 'secrets'), 0, 'never written')

  // Creating needs RBAC create on secrets: without it, the error says so.
  kube.remove('Secret', CA_NAMESPACE, CA_SECRET)
  kube.fail(1, 403, { verb: 'create', resource: 'secrets' })
  const denied = controlPlane(t, c, CREATE)
  await t.rejects(denied.start(), /cannot create Secret remora-system\/remora-ca.*needs create on secrets in remora-system/s)
})
