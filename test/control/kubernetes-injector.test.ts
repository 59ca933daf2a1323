// Black-box, the admission webhook inside a real `remora control` (Kubernetes source, secret-or-create CA) against
// the API stand-in: it serves HTTPS with a certificate from the CA that verifies, for the webhook Service's name,
// against the root it writes into the MutatingWebhookConfiguration's caBundle (and puts back when edited); an
// AdmissionReview gets the JSON Patch that gives the pod `remora inject` writes; the rest gets a proper answer.
import t from 'tap'
import { readFileSync } from 'node:fs'
import tls from 'node:tls'
import { parseAllDocuments } from 'yaml'
import { namespace, type KubeObject } from '../harness/kube-api.ts'
import { metric } from '../harness/metrics.ts'
import { START_TIMEOUT_MS } from '../harness/ready.ts'
import { readMeshWide } from '../../src/injection/mesh-wide.ts'
import { applyPatch } from '../../src/injection/patch.ts'
import { injectedByRemoraInject, patchOf, post, replicaSetPod, review, SERVICE_NAME } from '../injection/review-helpers.ts'
import { CA_NAMESPACE, CA_SECRET, cluster, controlPlane, logged } from './kube-helpers.ts'

const WEBHOOK = 'remora-injector'
/** The MutatingWebhookConfiguration as k8s/ installs it (no caBundle). */
const installed = parseAllDocuments(readFileSync(new URL('../../k8s/base/injector.yaml', import.meta.url), 'utf8'))
  .map((d) => d.toJS() as KubeObject).find((o) => o.kind === 'MutatingWebhookConfiguration') as KubeObject

const ENV = {
  REMORA_PROXY_IMAGE: 'registry.local/remora:7',
  REMORA_CONTROL_ADDR: 'remora-control.remora-system.svc:15012',
  REMORA_OTLP_ENDPOINT: 'http://jaeger-collector.remora-system.svc:4318',
}

t.test('remora control serves the webhook with a CA certificate and keeps the caBundle', async (t) => {
  const c = await cluster(t)
  const { kube } = c
  kube.apply(namespace(CA_NAMESPACE))
  kube.apply(installed)
  const cp = controlPlane(t, c, `secret-or-create:${CA_NAMESPACE}/${CA_SECRET}`, ENV)
  await cp.start()
  const listening = await logged(cp, /^admission webhook listening/)
  const port = (listening.address as { port: number }).port
  t.ok(port > 0, 'the webhook listens')

  const bundles = (): string[] => ((kube.get('MutatingWebhookConfiguration', '', WEBHOOK)?.webhooks ?? []) as Array<{ clientConfig: { caBundle?: string } }>).map((w) => w.clientConfig.caBundle ?? '')
  const root = (): string | undefined => kube.secretData(CA_NAMESPACE, CA_SECRET)?.['root.pem']
  const bundleIsRoot = (): boolean => root() !== undefined && bundles().length > 0 && bundles().every((b) => Buffer.from(b, 'base64').toString('utf8') === root())
  await kube.waitFor(bundleIsRoot, START_TIMEOUT_MS)
  t.pass("the caBundle is the CA's root (from the Secret the control plane created)")
  await logged(cp, /^MutatingWebhookConfiguration remora-injector: caBundle set/)
  const caBundle = Buffer.from(bundles()[0], 'base64').toString('utf8')

  // What the API server does: TLS to the Service's DNS name, trusting only the caBundle.
  for (const name of [SERVICE_NAME, `${SERVICE_NAME}.cluster.local`]) {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: name, ca: caBundle, checkServerIdentity: (host, cert) => tls.checkServerIdentity(name, cert) })
    await new Promise<void>((resolve, reject) => { socket.once('secureConnect', resolve); socket.once('error', reject) })
    t.ok(socket.authorized, `the served certificate verifies against the caBundle for ${name}`)
    socket.destroy()
  }

  const pod = replicaSetPod()
  const a = await post(port, caBundle, JSON.stringify(review('uid-a', pod)))
  t.equal(a.json?.response?.uid, 'uid-a')
  t.equal(a.json?.response?.allowed, true)
  t.equal(a.json?.response?.patchType, 'JSONPatch')
  const mesh = readMeshWide(ENV, new Map())
  t.same((applyPatch(pod, patchOf(a)) as { spec: unknown }).spec, injectedByRemoraInject(mesh), 'the patched pod is the one remora inject writes, with the mesh-wide settings given to the control plane')

  const disabled = await post(port, caBundle, JSON.stringify(review('uid-b', { metadata: { name: 'p', annotations: { 'remora.dev/inject': 'disabled' } }, spec: { containers: [{ name: 'a', image: 'a' }] } })))
  t.same([disabled.json?.response?.allowed, disabled.json?.response?.patch], [true, undefined], 'a disabled pod: allowed, no patch')
  t.equal((await post(port, caBundle, 'not json')).status, 400, 'not JSON: 400')
  const wrong = await post(port, caBundle, JSON.stringify({ ...review('uid-c', pod), apiVersion: 'admission.k8s.io/v1beta1' }))
  t.same([wrong.json?.response?.uid, wrong.json?.response?.allowed], ['uid-c', true], 'a v1beta1 review: allowed as it is, uid echoed')
  t.equal((await post(port, caBundle, JSON.stringify(review('uid-d', pod)))).json?.response?.allowed, true, 'still serving after them')

  // Someone edits the caBundle (or a re-apply of an older manifest clears it): put back.
  const edited = kube.get('MutatingWebhookConfiguration', '', WEBHOOK) as KubeObject
  ;(edited.webhooks as Array<{ clientConfig: { caBundle?: string } }>)[0].clientConfig.caBundle = Buffer.from('-----BEGIN CERTIFICATE-----\nbogus\n-----END CERTIFICATE-----\n').toString('base64')
  kube.apply(edited)
  t.notOk(bundleIsRoot(), 'edited')
  await logged(cp, /^MutatingWebhookConfiguration remora-injector: caBundle differed from the CA's root \(edited\) and was put back/)
  await kube.waitFor(bundleIsRoot, START_TIMEOUT_MS)
  t.pass('the edited caBundle is put back')
  t.ok(kube.requests.some((r) => r.verb === 'patch' && r.resource === 'mutatingwebhookconfigurations' && r.name === WEBHOOK && r.status === 200), 'by a PATCH of that one object')
  t.ok(kube.requests.filter((r) => r.resource === 'mutatingwebhookconfigurations' && (r.verb === 'list' || r.verb === 'watch')).every((r) => r.query.fieldSelector === `metadata.name=${WEBHOOK}`), 'listed and watched by name only (RBAC names it)')

  t.ok(await metric(cp.adminUrl, 'remora_control_admission_reviews_total', { outcome: 'injected' }) >= 2, 'injections counted')
  t.ok(await metric(cp.adminUrl, 'remora_control_admission_reviews_total', { outcome: 'malformed' }) >= 2, 'malformed reviews counted')
})
