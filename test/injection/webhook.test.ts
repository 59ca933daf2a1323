// The admission webhook over real HTTPS, in-process, with a certificate from the mesh CA: an AdmissionReview in,
// a JSON Patch out that, applied to the pod, gives what `remora inject` writes for its workload; pods not to
// inject, and reviews that make no sense, get a proper answer; the server never falls over; a new certificate
// is served without a restart.
import t from 'tap'
import { X509Certificate } from 'node:crypto'
import tls from 'node:tls'
import pino from 'pino'
import { parse } from 'yaml'
import { DEPLOYMENT, injectedByRemoraInject, patchOf, post, replicaSetPod, review, SERVICE_NAME } from './review-helpers.ts'
import { InjectSettings, readSettings } from '../../src/config/env.ts'
import { CertificateAuthority } from '../../src/identity/ca.ts'
import { applyPatch } from '../../src/injection/patch.ts'
import { injectPod, type MeshWide } from '../../src/injection/pod.ts'
import { workloadOf } from '../../src/injection/review.ts'
import { InjectionWebhook, MAX_REVIEW_BYTES } from '../../src/injection/webhook.ts'

const { namespaceAnnotations: _ns, ...DEFAULTS } = readSettings(InjectSettings, {}, new Map())
const MESH: MeshWide = { ...DEFAULTS, proxyImage: 'registry.local/remora:7', otlpEndpoint: 'http://jaeger-collector.remora-system.svc:4318' }

t.test('the webhook over HTTPS with a certificate from the mesh CA', async (t) => {
  const ca = await CertificateAuthority.create({ trustDomain: 'cluster.local' })
  const root = ca.trustAnchorsPem.join('')
  const issue = async (): Promise<{ key: string, cert: string, serial: string }> => {
    const c = await ca.issueServing({ dnsNames: [SERVICE_NAME], identity: 'spiffe://cluster.local/ns/remora-system/sa/remora-control', ttlMs: 3600_000 })
    return { key: c.key.privateKeyPem, cert: c.chainPem.join(''), serial: c.serial }
  }
  const first = await issue()
  const outcomes: string[] = []
  const webhook = new InjectionWebhook({ mesh: MESH, log: pino({ level: 'silent' }), tls: first, onReview: (o) => outcomes.push(o), maxBodyBytes: 256 * 1024 })
  const { port } = await webhook.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => webhook.close())

  t.test('a ReplicaSet pod: the patch, applied, gives the pod remora inject writes for the Deployment', async (t) => {
    const pod = replicaSetPod()
    const a = await post(port, root, JSON.stringify(review('uid-1', pod)))
    t.equal(a.status, 200)
    t.match(a.contentType, /^application\/json/)
    t.equal(a.json?.apiVersion, 'admission.k8s.io/v1')
    t.equal(a.json?.kind, 'AdmissionReview')
    t.equal(a.json?.response?.uid, 'uid-1', 'the uid is echoed')
    t.equal(a.json?.response?.allowed, true)
    t.equal(a.json?.response?.patchType, 'JSONPatch')
    const ops = patchOf(a)
    t.ok(ops.length > 0 && ops.every((o) => ['add', 'remove', 'replace'].includes(o.op) && o.path.startsWith('/spec/')), 'JSON Patch operations on the pod spec')
    const patched = applyPatch(pod, ops) as { spec: unknown, metadata: unknown }
    t.same(patched.spec, injectedByRemoraInject(MESH), 'the same pod as remora inject')
    t.same(patched.metadata, pod.metadata, 'metadata untouched')
    const direct = injectPod({ metadata: pod.metadata as never, spec: pod.spec }, MESH, { object: 'Pod demo/web-6f7c9d8b5-*', workload: 'web' })
    t.ok(direct.injected)
    t.same(patched.spec, direct.spec, 'and as injectPod')
    t.equal(workloadOf(pod.metadata as never), 'web', "the workload is the Deployment's name (OTEL_SERVICE_NAME)")
  })

  t.test('pods not to inject are allowed as they are', async (t) => {
    const disabled = { metadata: { name: 'job-1', annotations: { 'remora.dev/inject': 'disabled' } }, spec: { containers: [{ name: 'a', image: 'a' }] } }
    const hostNet = { metadata: { name: 'node-agent' }, spec: { hostNetwork: true, containers: [{ name: 'a', image: 'a' }] } }
    const injected = applyPatch(replicaSetPod(), patchOf(await post(port, root, JSON.stringify(review('uid-0', replicaSetPod())))))
    for (const [uid, pod, why] of [['uid-2', disabled, /remora\.dev\/inject is disabled/], ['uid-3', hostNet, /hostNetwork/], ['uid-4', injected, /already has the remora-proxy container/]] as const) {
      const a = await post(port, root, JSON.stringify(review(uid, pod)))
      t.equal(a.status, 200)
      t.equal(a.json?.response?.uid, uid)
      t.equal(a.json?.response?.allowed, true)
      t.equal(a.json?.response?.patch, undefined, `${uid}: no patch`)
      t.equal(a.json?.response?.patchType, undefined)
      t.match(a.json?.response?.status?.message, why)
    }
  })

  t.test('a pod remora inject would refuse is refused, with the same message', async (t) => {
    const pod = { metadata: { name: 'web', annotations: { 'remora.dev/proxy-memory-limit': 'lots' } }, spec: { containers: [{ name: 'a', image: 'a' }] } }
    const a = await post(port, root, JSON.stringify(review('uid-5', pod)))
    t.equal(a.status, 200)
    t.equal(a.json?.response?.uid, 'uid-5')
    t.equal(a.json?.response?.allowed, false)
    t.equal(a.json?.response?.status?.code, 400)
    t.match(a.json?.response?.status?.message, /^remora injector: annotation remora\.dev\/proxy-memory-limit in Pod demo\/web: /)
  })

  t.test('malformed reviews get a proper answer, never a crash', async (t) => {
    const notJson = await post(port, root, '{"apiVersion": "admission.k8s.io/v1", ')
    t.equal(notJson.status, 400, 'a body that is not JSON: 400')
    t.match(notJson.text, /not JSON/)
    const cases: Array<[string, unknown, string, RegExp]> = [
      ['an array', [1, 2], '', /not a JSON object/],
      ['v1beta1', { ...review('uid-6', replicaSetPod()), apiVersion: 'admission.k8s.io/v1beta1' }, 'uid-6', /admissionReviewVersions: \[v1\]/],
      ['another kind', { ...review('uid-7', replicaSetPod()), kind: 'TokenReview' }, 'uid-7', /not an AdmissionReview/],
      ['no request', { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }, '', /no request/],
      ['no uid', review('', replicaSetPod()), '', /no uid/],
      ['a Deployment', review('uid-8', parse(DEPLOYMENT), 'demo', { kind: { group: 'apps', version: 'v1', kind: 'Deployment' }, resource: { group: 'apps', version: 'v1', resource: 'deployments' } }), 'uid-8', /only pods are injected/],
      ['a pod update', review('uid-9', replicaSetPod(), 'demo', { operation: 'UPDATE' }), 'uid-9', /only pods being created/],
      ['pods/binding', review('uid-10', replicaSetPod(), 'demo', { subResource: 'binding' }), 'uid-10', /only pods are injected/],
      ['no object', review('uid-11', null), 'uid-11', /no object/],
      ['a pod without containers', review('uid-12', { metadata: { name: 'x' }, spec: { containers: 'nope' } }), 'uid-12', /containers must be a list/],
    ]
    for (const [what, body, uid, message] of cases) {
      const a = await post(port, root, JSON.stringify(body))
      t.equal(a.status, 200, `${what}: 200`)
      t.equal(a.json?.apiVersion, 'admission.k8s.io/v1', `${what}: an AdmissionReview v1`)
      t.equal(a.json?.kind, 'AdmissionReview')
      t.equal(a.json?.response?.uid, uid, `${what}: uid ${JSON.stringify(uid)}`)
      t.equal(a.json?.response?.patch, undefined, `${what}: no patch`)
      t.match(a.json?.response?.status?.message, message, `${what}: says why`)
      if (what !== 'a pod without containers') t.equal(a.json?.response?.allowed, true, `${what}: allowed (failurePolicy Ignore: never block)`)
    }
    const big = await post(port, root, Buffer.alloc(300 * 1024, 0x20))
    t.equal(big.status, 413, 'a body over the cap: 413, not read')
    t.equal((await post(port, root, '', '/inject', 'GET')).status, 405)
    t.equal((await post(port, root, '{}', '/mutate')).status, 404)
    t.equal((await post(port, root, '', '/ready', 'GET')).status, 200, 'still serving')
    t.ok(MAX_REVIEW_BYTES >= 3 * 1024 * 1024, 'the default cap holds the largest pod etcd stores, twice')
  })

  t.test('a new certificate is served to new connections without a restart', async (t) => {
    const servedSerial = async (): Promise<string> => new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, servername: SERVICE_NAME, ca: root }, () => {
        const serial = new X509Certificate(s.getPeerX509Certificate()?.raw ?? Buffer.alloc(0)).serialNumber.toLowerCase()
        s.end()
        resolve(serial)
      })
      s.on('error', reject)
    })
    t.equal(await servedSerial(), first.serial)
    const next = await issue()
    webhook.setCredentials(next)
    t.equal(await servedSerial(), next.serial)
    t.equal((await post(port, root, JSON.stringify(review('uid-20', replicaSetPod())))).json?.response?.allowed, true)
  })

  t.test('every review was counted by outcome', async (t) => {
    for (const o of ['injected', 'skipped', 'refused', 'malformed', 'not-a-pod']) t.ok(outcomes.includes(o), o)
  })
})
