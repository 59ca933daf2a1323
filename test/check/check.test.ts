// `remora check` as a user runs it, against the Kubernetes stand-in (the real wire protocol): a healthy install
// passes, and each thing broken fails naming what to do.
import t from 'tap'
import { once } from 'node:events'
import http from 'node:http'
import tls from 'node:tls'
import type { AddressInfo } from 'node:net'
import { check, checkJson, cluster, controlDeployment, controlPod, DNS_NAME, install, line, NS } from './helpers.ts'

const DAY = 24 * 3600 * 1000

t.test('a healthy install passes: exit 0, every line √ but the webhook endpoint it cannot see from outside', async (t) => {
  const c = await cluster(t)
  install(c)
  const r = await check(c)
  t.equal(r.code, 0, r.stdout + r.stderr)
  for (const title of [/the API server answers/, /Kubernetes is 1\.29 or later: 1\.33/, /remora-system namespace exists/, /remora-control Deployment has all its replicas ready: 2\/2/, /remora-control pods are Ready: 2 of 2/,
    /CA Secret remora-system\/remora-ca holds a valid CA/, /CA root .* is valid: expires/, /CA issuer .* is valid: expires/, /MutatingWebhookConfiguration remora-injector is registered/,
    /trusts the mesh's CA \(caBundle\)/, /Service remora-system\/remora-injector exists/, /has ready endpoints: 1 ready/]) {
    t.match(line(r.stdout, title), /^√ /, String(title))
  }
  t.match(line(r.stdout, /the injector answers HTTPS/), /^‼ .*not checked.*port-forward service\/remora-injector 15017:443.*--webhook-url/, 'says honestly what it cannot reach')
  t.match(r.stdout, /Status check results are √/)
  t.notMatch(r.stdout, /^× /m)
})

t.test('--pre: an API server older than 1.29 fails with the fix; a denied verb fails naming it; both exit 1', async (t) => {
  const c = await cluster(t)
  const good = await check(c, '--pre', '--kubeconfig', c.kubeconfig)
  t.equal(good.code, 0, good.stdout)
  t.match(line(good.stdout, /can create clusterroles cluster-wide/), /^√ /)
  t.match(line(good.stdout, /can create deployments in remora-system/), /^√ /)
  t.ok(c.kube.accessReviews.some((a) => a.verb === 'create' && a.group === 'apps' && a.resource === 'deployments' && a.namespace === NS), 'asked with a SelfSubjectAccessReview')

  c.kube.setVersion('1', '28+', 'v1.28.9-eks-036c24b')
  c.kube.denyAccess({ verb: 'create', resource: 'clusterrolebindings' })
  const bad = await check(c, '--pre')
  t.equal(bad.code, 1)
  t.match(line(bad.stdout, /Kubernetes is 1\.29 or later/), /^× .*the API server is 1\.28: native sidecars .* need 1\.29; upgrade the cluster/)
  t.match(line(bad.stdout, /can create clusterrolebindings/), /^× .*you may not create clusterrolebindings\.rbac\.authorization\.k8s\.io cluster-wide.*ask a cluster admin/)
  t.match(line(bad.stdout, /can create clusterroles cluster-wide/), /^√ /, 'only the denied verb fails')
})

t.test('the CA: missing, expired, expiring soon', async (t) => {
  t.test('a missing CA Secret fails, saying who creates it', async (t) => {
    const c = await cluster(t)
    install(c, { skip: ['ca'] })
    const r = await check(c)
    t.equal(r.code, 1)
    t.match(line(r.stdout, /CA Secret/), /^× .*Secret remora-system\/remora-ca not found: the control plane creates it on its first start.*logs deployment\/remora-control/)
    t.match(line(r.stdout, /caBundle/), /^‼ .*CA could not be read/, 'the caBundle cannot be compared without it')
  })
  t.test('an expired CA fails with its date and what to do', async (t) => {
    const c = await cluster(t, { now: new Date(Date.now() - 400 * DAY), rootTtlMs: 365 * DAY, issuerTtlMs: 200 * DAY })
    install(c)
    const r = await check(c)
    t.equal(r.code, 1)
    t.match(line(r.stdout, /holds a valid CA/), /^√ /, 'it is still a well-formed CA')
    t.match(line(r.stdout, /CA root .* is valid/), /^× .*expired 35 days ago.*replace it with a new root/)
    t.match(line(r.stdout, /CA issuer .* is valid/), /^× .*expired 200 days ago/)
  })
  t.test('an issuer expiring within 30 days warns, and the check still passes', async (t) => {
    const c = await cluster(t, { issuerTtlMs: 10 * DAY })
    install(c)
    const r = await check(c)
    t.equal(r.code, 0, r.stdout)
    t.match(line(r.stdout, /CA issuer .* is valid/), /^‼ .*expires in (9|10) days/)
    t.match(line(r.stdout, /CA root .* is valid/), /^√ /)
  })
  t.test('a caBundle that is not the root fails; an empty one warns that the control plane fills it', async (t) => {
    const c = await cluster(t)
    const other = await cluster(t)
    install(c, { caBundle: other.ca.export().rootPem })
    const r = await check(c)
    t.equal(r.code, 1)
    t.match(line(r.stdout, /caBundle/), /^× .*is not the root in Secret remora-system\/remora-ca.*rollout restart deployment\/remora-control/)
    install(c, { caBundle: '' })
    const empty = await check(c)
    t.match(line(empty.stdout, /caBundle/), /^‼ .*the control plane fills it when it starts/)
  })
})

t.test('a control plane that is not ready fails, naming the pod and why', async (t) => {
  const c = await cluster(t)
  install(c, { deployment: controlDeployment(2, 1), pods: [controlPod('remora-control-a', true), controlPod('remora-control-b', false)] })
  const r = await check(c)
  t.equal(r.code, 1)
  t.match(line(r.stdout, /replicas ready/), /^× .*: 1\/2 replicas ready.*kubectl -n remora-system describe deployment remora-control/)
  t.match(line(r.stdout, /pods are Ready/), /^× .*not Ready: remora-control-b \(app: CrashLoopBackOff\)/)
  const none = await cluster(t)
  install(none, { skip: ['endpoints'] })
  const r2 = await check(none)
  t.equal(r2.code, 1)
  t.match(line(r2.stdout, /has ready endpoints/), /^× .*ready endpoints: no endpoints: the injector is not running/)
  const empty = await cluster(t)
  const nothing = await check(empty)
  t.equal(nothing.code, 1)
  t.match(line(nothing.stdout, /namespace exists/), /^× .*: remora is not installed .*kubectl apply -k k8s\//)
})

t.test('an unreachable API server fails at once with what to check', async (t) => {
  const c = await cluster(t)
  await c.kube.close()
  const r = await check(c)
  t.equal(r.code, 1)
  t.match(line(r.stdout, /the API server answers/), /^× the API server answers: cannot reach http:\/\/127\.0\.0\.1:\d+ .*ECONNREFUSED.*current-context/)
  t.equal(r.stdout.split('\n').filter((l) => /^[√‼×] /.test(l)).length, 1, 'nothing else is tried')
})

t.test('--webhook-url: the injector\'s serving certificate is verified against the caBundle for the Service name', async (t) => {
  const c = await cluster(t)
  install(c)
  const serve = async (dnsNames: string[]): Promise<string> => {
    const cert = await c.ca.issueServing({ dnsNames, identity: 'spiffe://cluster.local/ns/remora-system/sa/remora-control' })
    const server = tls.createServer({ key: cert.key.privateKeyPem, cert: cert.chainPem.join('') }, (s) => s.end())
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    t.teardown(() => { server.close() })
    return `https://127.0.0.1:${(server.address() as AddressInfo).port}`
  }
  const good = await check(c, '--webhook-url', await serve([DNS_NAME]))
  t.equal(good.code, 0, good.stdout)
  t.match(line(good.stdout, /serves a certificate for remora-injector\.remora-system\.svc/), /^√ .*valid until/)
  const wrong = await check(c, '--webhook-url', await serve(['other.remora-system.svc']))
  t.equal(wrong.code, 1)
  t.match(line(wrong.stdout, /serves a certificate for/), /^× .*not for remora-injector\.remora-system\.svc/)
})

t.test('--proxy: an injected pod (remora inject\'s output) is reported, its certificate read through pods/proxy', async (t) => {
  const c = await cluster(t)
  install(c)
  const { injectedPod } = await import('./pods.ts')
  const shop = await injectedPod('shop', 'web-0')
  c.kube.apply({ kind: 'Namespace', metadata: { name: 'shop' } })
  c.kube.apply(shop.ready)
  c.kube.apply(await injectedPod('shop', 'old-1', { image: 'ghcr.io/remora-mesh/remora:0.0.9' }).then((p) => p.ready))
  c.kube.apply(await injectedPod('shop', 'stuck-2').then((p) => p.crashing))
  c.kube.apply({ kind: 'Pod', metadata: { name: 'plain-3', namespace: 'shop' }, spec: { containers: [{ name: 'app', image: 'app' }] }, status: { phase: 'Running' } })
  // The sidecar's /metrics, as the API server's pods/proxy would forward it.
  const expiry = Math.floor(Date.now() / 1000) + 6 * 3600
  const metrics = http.createServer((req, res) => {
    res.writeHead(req.url === '/metrics' ? 200 : 404, { 'content-type': 'text/plain; version=0.0.4' })
    res.end(`# HELP remora_certificate_expiry_timestamp_seconds x\n# TYPE remora_certificate_expiry_timestamp_seconds gauge\nremora_certificate_expiry_timestamp_seconds ${expiry}\n`)
  })
  metrics.listen(0, '127.0.0.1')
  await once(metrics, 'listening')
  t.teardown(() => { metrics.close() })
  c.kube.proxyPod('shop', 'web-0', 15000, `http://127.0.0.1:${(metrics.address() as AddressInfo).port}`)

  const r = await check(c, '--proxy', '--namespace', 'shop')
  t.equal(r.code, 1, 'the crashing sidecar fails it')
  t.match(line(r.stdout, /shop\/web-0: the sidecar is ready/), /^√ .*: native sidecar, 0 restarts/)
  t.match(line(r.stdout, /shop\/web-0: the sidecar's version/), /^√ .*0\.1\.0/)
  t.match(line(r.stdout, /shop\/web-0: the sidecar's certificate/), /^√ .*expires .*\(in (5|6) hours\)/)
  t.match(line(r.stdout, /shop\/old-1: the sidecar's version/), /^‼ .*runs 0\.0\.9, this remora is 0\.1\.0: upgrade the mesh/)
  t.match(line(r.stdout, /shop\/old-1: the sidecar's certificate/), /^‼ .*: not checked: .*503 error trying to reach service.*port-forward pod\/old-1 15000/)
  t.match(line(r.stdout, /shop\/stuck-2: the sidecar is ready/), /^× .*: remora-proxy is CrashLoopBackOff; the app containers start only once it is ready; see why: kubectl -n shop logs stuck-2 -c remora-proxy/)
  t.match(line(r.stdout, /every running pod in namespace shop has the sidecar/), /^‼ .*: 1 without: shop\/plain-3/)

  const one = await checkJson(c, '--proxy', '--namespace', 'shop', '--pod', 'web-0')
  t.equal(one.code, 0)
  t.equal(one.report.success, true)
  t.same(one.report.checks.filter((x) => x.group === 'remora-data-plane').map((x) => x.outcome), ['ok', 'ok', 'ok'])
  const unmeshed = await check(c, '--proxy', '--namespace', 'shop', '--pod', 'plain-3')
  t.equal(unmeshed.code, 1)
  t.match(line(unmeshed.stdout, /plain-3 has the sidecar/), /^× .*: it has no remora-proxy container/)
})

t.test('--output json parses, and says what the text says', async (t) => {
  const c = await cluster(t)
  install(c, { skip: ['ca'] })
  const { code, report } = await checkJson(c)
  t.equal(code, 1)
  t.equal(report.success, false)
  t.equal(report.summary.fail, report.checks.filter((x) => x.outcome === 'fail').length)
  const ca = report.checks.find((x) => x.check.includes('CA Secret'))
  t.match(ca, { group: 'remora-ca', outcome: 'fail', message: /not found/ })
})

t.test('options that do not go together exit 2 with the usage', async (t) => {
  const c = await cluster(t)
  const r = await check(c, '--pod', 'web-0')
  t.equal(r.code, 2)
  t.match(r.stderr, /--pod needs --proxy and --namespace.*REMORA_CHECK_USAGE/)
  const both = await check(c, '--pre', '--proxy')
  t.equal(both.code, 2)
  const help = await check(c, '--help')
  t.equal(help.code, 0)
  t.match(help.stdout, /--webhook-url/)
})
