// The pieces of remora check that are pure (expiry, versions, image tags, caBundle), its list of what an install
// creates against k8s/, and the stand-in's new resources as the real client-node reads them.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseAllDocuments } from 'yaml'
import { AdmissionregistrationV1Api, AppsV1Api, AuthorizationV1Api, VersionApi } from '@kubernetes/client-node'
import { CA_WARN_WITHIN_MS, DAY_MS, bundleHoldsRoots, expiryOf, imageTag, kubernetesVersion, sameVersion } from '../../src/check/certs.ts'
import { INSTALL_OBJECTS } from '../../src/check/cluster.ts'
import { remoraVersion } from '../../src/check/main.ts'
import { CertificateAuthority } from '../../src/identity/ca.ts'
import { FakeKubeApi } from '../harness/kube-api.ts'
import { controlDeployment, webhookConfiguration } from './helpers.ts'

const ROOT = new URL('../..', import.meta.url).pathname

t.test('expiry: expired and not-yet-valid fail, within the window warns, else ok', async (t) => {
  const now = new Date('2026-01-01T00:00:00Z')
  const from = new Date('2025-01-01T00:00:00Z')
  const at = (days: number): Date => new Date(now.getTime() + days * DAY_MS)
  t.match(expiryOf('the root', from, at(-3), now, CA_WARN_WITHIN_MS, 'rotate it'), { outcome: 'fail', message: /^the root expired 3 days ago \(2025-12-29T00:00:00Z\); rotate it$/ })
  t.match(expiryOf('the root', from, at(29), now, CA_WARN_WITHIN_MS, 'rotate it'), { outcome: 'warn', message: /expires in 29 days/ })
  t.match(expiryOf('the root', from, at(31), now, CA_WARN_WITHIN_MS, 'rotate it'), { outcome: 'ok', message: /expires 2026-02-01T00:00:00Z \(in 31 days\)/ })
  t.match(expiryOf('the root', at(1), at(400), now, CA_WARN_WITHIN_MS, 'rotate it'), { outcome: 'fail', message: /not valid until/ })
  t.match(expiryOf('it', from, new Date(now.getTime() + 90 * 60_000), now, 30 * 60_000, 'x'), { outcome: 'ok', message: /in 90 minutes/ })
})

t.test('the Kubernetes version: from gitVersion, else major and minor as providers write them', async (t) => {
  t.same(kubernetesVersion({ gitVersion: 'v1.29.3-gke.1282000' }), { major: 1, minor: 29 })
  t.same(kubernetesVersion({ gitVersion: 'weird', major: '1', minor: '28+' }), { major: 1, minor: 28 })
  t.equal(kubernetesVersion({ major: '', minor: '' }), undefined)
})

t.test('image tags and versions', async (t) => {
  t.equal(imageTag('ghcr.io/remora-mesh/remora:0.1.0'), '0.1.0')
  t.equal(imageTag('registry.local:5000/remora'), undefined, 'a registry port is not a tag')
  t.equal(imageTag('registry.local:5000/remora:v0.2.0@sha256:abc'), 'v0.2.0')
  t.equal(imageTag('remora@sha256:abc'), undefined)
  t.ok(sameVersion('v0.1.0', '0.1.0'))
  t.notOk(sameVersion('0.0.9', '0.1.0'))
  t.equal(remoraVersion(), JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version, "this remora's version is package.json's")
})

t.test('a caBundle holds the roots, or not', async (t) => {
  const a = (await CertificateAuthority.create({ trustDomain: 'cluster.local' })).export()
  const b = (await CertificateAuthority.create({ trustDomain: 'cluster.local' })).export()
  t.ok(bundleHoldsRoots(a.rootPem, a.rootPem))
  t.ok(bundleHoldsRoots(b.rootPem + a.rootPem, a.rootPem), 'among others (a rotation)')
  t.notOk(bundleHoldsRoots(b.rootPem, a.rootPem))
  t.notOk(bundleHoldsRoots('not pem', a.rootPem))
})

t.test('--pre asks about every kind of object the kustomize base (k8s/) creates', async (t) => {
  // The resources of k8s/kustomization.yaml, folders followed to their own kustomization.yaml.
  const kinds = new Set<string>()
  const read = (dir: string): void => {
    const k = parseAllDocuments(readFileSync(join(dir, 'kustomization.yaml'), 'utf8'))[0].toJS() as { resources?: string[] }
    for (const r of k.resources ?? []) {
      if (!/\.ya?ml$/.test(r)) { read(join(dir, r)); continue }
      for (const doc of parseAllDocuments(readFileSync(join(dir, r), 'utf8'))) {
        const kind = (doc.toJS() as { kind?: string } | null)?.kind
        if (kind !== undefined) kinds.add(kind)
      }
    }
  }
  read(join(ROOT, 'k8s'))
  t.ok(kinds.has('Deployment') && kinds.has('Namespace'), `the base creates ${[...kinds].join(', ')}`)
  const asked = new Set(INSTALL_OBJECTS.map((o) => o.kind))
  t.same([...kinds].filter((k) => !asked.has(k)), [], 'every kind is asked about')
})

t.test("the stand-in's /version, SelfSubjectAccessReviews, Deployments and MutatingWebhookConfigurations, read by client-node", async (t) => {
  const kube = await FakeKubeApi.start()
  t.teardown(() => kube.close())
  const kc = kube.kubeConfig()
  t.match(await kc.makeApiClient(VersionApi).getCode(), { major: '1', minor: '33', gitVersion: /^v1\.33/ })
  kube.setVersion('1', '28')
  t.match(await kc.makeApiClient(VersionApi).getCode(), { major: '1', minor: '28', gitVersion: 'v1.28.0' })

  const authz = kc.makeApiClient(AuthorizationV1Api)
  const review = (resource: string) => authz.createSelfSubjectAccessReview({ body: { spec: { resourceAttributes: { verb: 'create', group: 'rbac.authorization.k8s.io', resource } } } })
  kube.denyAccess({ resource: 'clusterroles' })
  t.equal((await review('clusterroles')).status?.allowed, false)
  t.equal((await review('roles')).status?.allowed, true)

  kube.apply({ kind: 'Namespace', metadata: { name: 'remora-system' } })
  kube.apply(controlDeployment(2, 1))
  const d = await kc.makeApiClient(AppsV1Api).readNamespacedDeployment({ namespace: 'remora-system', name: 'remora-control' })
  t.match(d, { spec: { replicas: 2 }, status: { readyReplicas: 1 } })
  t.equal((await kc.makeApiClient(AppsV1Api).listNamespacedDeployment({ namespace: 'remora-system' })).items.length, 1)

  kube.apply(webhookConfiguration('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'))
  const mwc = await kc.makeApiClient(AdmissionregistrationV1Api).readMutatingWebhookConfiguration({ name: 'remora-injector' })
  t.equal(mwc.webhooks?.[0].clientConfig.service?.name, 'remora-injector')
  t.equal(mwc.metadata?.namespace, undefined, 'cluster-scoped')
  await t.rejects(kc.makeApiClient(AdmissionregistrationV1Api).readMutatingWebhookConfiguration({ name: 'nope' }), { code: 404 })
})
