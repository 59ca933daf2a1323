// Black-box, Kubernetes identity: the CA key comes from a Secret, sidecars prove who they are with
// projected service account tokens (TokenReview), the endpoint identity comes from the pod's
// service account, and a token for another audience or a CSR for another account gets nothing.
import t from 'tap'
import http from 'node:http'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Pool } from 'undici'
import { FakeKubeApi, endpointSlice, pod, service } from '../harness/kube-api.ts'
import { ControlProcess } from '../harness/control.ts'
import { SidecarProcess, eventually, freePort, type Teardown } from '../harness/mesh.ts'
import { startApp } from '../harness/apps.ts'
import { metric } from '../harness/metrics.ts'
import { CertificateAuthority } from '../../src/identity/ca.ts'

const NS = 'shop'

async function sidecar (t: Teardown, name: string, args: string[], env: Record<string, string>): Promise<SidecarProcess> {
  const ports = { outbound: await freePort(), inbound: await freePort(), admin: await freePort() }
  const s = new SidecarProcess(name, ports, [
    '--outbound-addr', `127.0.0.1:${ports.outbound}`, '--admin-addr', `127.0.0.1:${ports.admin}`, '--inbound-addr', `127.0.0.1:${ports.inbound}`, ...args,
  ], { ...process.env, REMORA_LOG_LEVEL: 'info', ...env })
  t.teardown(() => s.stop('SIGKILL'))
  return s
}

t.test('Kubernetes: TokenReview-proven identities, CA from a Secret, mTLS end to end', async (t) => {
  const kube = await FakeKubeApi.start()
  t.teardown(() => kube.close())
  const dir = mkdtempSync(join(tmpdir(), 'remora-kube-id-'))
  const kubeconfig = join(dir, 'kubeconfig')
  writeFileSync(kubeconfig, kube.kubeConfig().exportConfig())
  const ca = await CertificateAuthority.create({ trustDomain: 'cluster.local' })
  const pem = ca.export()
  kube.putSecret('remora-system', 'remora-ca', { 'root.pem': pem.rootPem, 'issuer.pem': pem.issuerPem, 'issuer-key.pem': pem.issuerKeyPem })
  const anchors = join(dir, 'root.pem')
  writeFileSync(anchors, pem.rootPem)
  const token = (sa: string, audiences?: string[]): string => {
    const file = join(dir, `token-${sa}-${audiences?.join('-') ?? 'remora'}`)
    writeFileSync(file, kube.issueToken(NS, sa, audiences))
    return file
  }

  const inboundPort = await freePort()
  const cp = new ControlProcess(['--proxy-inbound-port', String(inboundPort), '--ca', 'secret:remora-system/remora-ca'], { KUBECONFIG: kubeconfig, REMORA_SOURCE: 'kubernetes' })
  t.teardown(() => cp.stop('SIGKILL'))
  const app = await startApp(t, (req: http.IncomingMessage, res: http.ServerResponse) => { req.resume(); res.end(`caller=${String(req.headers['remora-client-id'])}`) })
  kube.apply(service(NS, 'web', { ports: [{ name: 'http', port: 80, targetPort: 'http' }] }))
  kube.apply(pod(NS, 'web-1', { ip: '127.0.0.21', serviceAccountName: 'web' }))
  kube.apply(endpointSlice(NS, 'web-1', 'web', { ports: [{ name: 'http', port: app.port }], endpoints: [{ addresses: ['127.0.0.21'], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'web-1', namespace: NS } }] }))
  await cp.start()

  const mtls = (sa: string, tokenFile: string): Record<string, string> => ({
    REMORA_CONTROL_ADDR: cp.address, REMORA_TRUST_ANCHORS: anchors, REMORA_TOKEN_FILE: tokenFile, REMORA_IDENTITY: `spiffe://cluster.local/ns/${NS}/sa/${sa}`,
  })
  const p = { outbound: await freePort(), inbound: inboundPort, admin: await freePort() }
  // The pod's sidecar listens on the pod IP at the common inbound port, as in a cluster.
  const webPod = new SidecarProcess('web-pod', p, ['--outbound-addr', `127.0.0.1:${p.outbound}`, '--admin-addr', `127.0.0.1:${p.admin}`, '--inbound-addr', `127.0.0.21:${inboundPort}`, '--app-ports', String(app.port)], { ...process.env, REMORA_LOG_LEVEL: 'info', ...mtls('web', token('web')) })
  t.teardown(() => webPod.stop('SIGKILL'))
  await webPod.start()
  const client = await sidecar(t, 'cart', [], mtls('cart', token('cart')))
  await client.start()

  const pool = new Pool(client.proxyUrl, { connections: 2 })
  t.teardown(() => pool.close())
  const res = await pool.request({ path: '/', method: 'GET', headers: { host: `web.${NS}` } })
  t.equal(res.statusCode, 200)
  t.equal(await res.body.text(), `caller=spiffe://cluster.local/ns/${NS}/sa/cart`, "the app sees the caller's verified identity")
  t.equal(await metric(client.adminUrl, 'remora_certificate_requests_total', { result: 'issued' }), 1)
  t.ok(await metric(client.adminUrl, 'remora_certificate_expiry_timestamp_seconds') > Date.now() / 1000 + 3600 * 23, 'a 24 h certificate')

  // The endpoint's pod changes service account: the table now expects another identity, which the
  // running sidecar (still web) cannot show, so calls fail with peer identity mismatch.
  kube.apply(pod(NS, 'web-1', { ip: '127.0.0.21', serviceAccountName: 'payments' }))
  await eventually(async () => {
    const r = await pool.request({ path: '/', method: 'GET', headers: { host: `web.${NS}` } })
    await r.body.text()
    return r.statusCode === 502 && r.headers['remora-proxy-error'] === 'peer identity mismatch'
  }, 5000, 'peer identity mismatch once the table expects payments')

  // A token for another audience proves nothing; a token for web asking as admin gets nothing.
  const wrongAudience = await sidecar(t, 'wrong-audience', [], mtls('web', token('web', ['kubernetes'])))
  const wrong = await wrongAudience.startNotReady(2500)
  t.equal(wrong.status, 503, 'no certificate, not ready')
  t.match(wrong.body, /no workload certificate yet/)
  const impostor = await sidecar(t, 'impostor', [], { ...mtls('admin', token('web')) })
  t.equal((await impostor.startNotReady(2500)).status, 503, 'no certificate for someone else')
  await eventually(() => /identity_mismatch/.test(impostor.output), 5000, 'the sidecar says why')
  await eventually(() => cp.output.includes('"proven":"spiffe://cluster.local/ns/shop/sa/web"') && cp.output.includes('spiffe://cluster.local/ns/shop/sa/admin'), 5000, 'the control plane logs both identities')
  t.match(cp.output, /not for audience remora|not authenticated/, 'the wrong audience is logged')
  t.notMatch(cp.output, /PRIVATE KEY/, 'the CA key is never logged')
})
