// The checks after `kubectl apply -k k8s/`: the control plane is ready, its CA is valid (and for how long), and the
// injector's webhook is registered with the mesh's root and has ready endpoints. What the API server cannot show
// (the webhook's HTTPS endpoint inside the cluster) is said so, and checked only when a port-forward is given.
import { X509Certificate } from 'node:crypto'
import tls from 'node:tls'
import { checkCaInput } from '../identity/ca-input.ts'
import { bundleHoldsRoots, CA_WARN_WITHIN_MS, certificatesOf, expiryOf } from './certs.ts'
import { field, isJson, list, num, statusMessage, str, Unreachable, type ApiResponse, type KubeClient } from './kube.ts'
import { fail, ok, warn, type CheckResult } from './result.ts'

const CONTROL = 'remora-control-plane'
const CA = 'remora-ca'
const WEBHOOK = 'remora-injector'

export interface InstallNames {
  /** Where the control plane runs (remora-system). */
  readonly namespace: string
  readonly deployment: string
  readonly caSecret: string
  readonly trustDomain: string
  readonly webhook: string
  /** The injector through a port-forward (https://127.0.0.1:15017): its serving certificate is checked too. */
  readonly webhookUrl?: string
  readonly now: Date
}

export const INSTALL_DEFAULTS = Object.freeze({ namespace: 'remora-system', deployment: 'remora-control', caSecret: 'remora-ca', webhook: 'remora-injector' })

const APPLY = 'install it: kubectl apply -k k8s/'

/** A GET, with a failure to reach the API server turned into a failed check. */
async function get (kube: KubeClient, path: string, query?: Record<string, string>): Promise<ApiResponse | string> {
  try {
    return await kube.get(path, query)
  } catch (err) {
    if (!(err instanceof Unreachable)) throw err
    return `cannot ask the API server (${err.message})`
  }
}

export async function checkInstall (kube: KubeClient, names: InstallNames): Promise<CheckResult[]> {
  const ns = names.namespace
  const nsCheck = `the ${ns} namespace exists`
  const r = await get(kube, `/api/v1/namespaces/${ns}`)
  if (typeof r === 'string') return [fail(CONTROL, nsCheck, r)]
  if (r.status === 404) return [fail(CONTROL, nsCheck, `remora is not installed (no namespace ${ns}); ${APPLY}`)]
  if (r.status !== 200) return [fail(CONTROL, nsCheck, `cannot read namespace ${ns}: ${statusMessage(r)}`)]
  const results = [field(r.body, 'status', 'phase') === 'Terminating'
    ? fail(CONTROL, nsCheck, `namespace ${ns} is being deleted; wait for it to go, then ${APPLY}`)
    : ok(CONTROL, nsCheck)]
  results.push(...await checkControlPlane(kube, names))
  const ca = await checkCa(kube, names)
  results.push(...ca.results)
  results.push(...await checkWebhook(kube, names, ca.rootsPem))
  return results
}

/** The Deployment's ready replicas, then its pods' Ready condition (the API server's view of their /ready). */
async function checkControlPlane (kube: KubeClient, names: InstallNames): Promise<CheckResult[]> {
  const { namespace: ns, deployment: name } = names
  const check = `the ${name} Deployment has all its replicas ready`
  const r = await get(kube, `/apis/apps/v1/namespaces/${ns}/deployments/${name}`)
  if (typeof r === 'string') return [fail(CONTROL, check, r)]
  if (r.status === 404) return [fail(CONTROL, check, `Deployment ${ns}/${name} not found; ${APPLY}`)]
  if (r.status !== 200) return [fail(CONTROL, check, `cannot read Deployment ${ns}/${name}: ${statusMessage(r)}`)]
  const desired = num(field(r.body, 'spec', 'replicas')) ?? 1
  const ready = num(field(r.body, 'status', 'readyReplicas')) ?? 0
  const describe = `kubectl -n ${ns} describe deployment ${name}; kubectl -n ${ns} logs deployment/${name}`
  const results = [ready >= desired && desired > 0
    ? ok(CONTROL, check, `${ready}/${desired} ready`)
    : fail(CONTROL, check, `${ready}/${desired} replicas ready: sidecars get no endpoints or certificates from a control plane that is not ready; see why: ${describe}`)]

  const podsCheck = `the ${name} pods are Ready`
  const matchLabels = field(r.body, 'spec', 'selector', 'matchLabels')
  if (!isJson(matchLabels) || Object.keys(matchLabels).length === 0) {
    results.push(warn(CONTROL, podsCheck, `Deployment ${ns}/${name} has no spec.selector.matchLabels; its pods are not checked`))
    return results
  }
  const labelSelector = Object.entries(matchLabels).map(([k, v]) => `${k}=${String(v)}`).join(',')
  const pods = await get(kube, `/api/v1/namespaces/${ns}/pods`, { labelSelector })
  if (typeof pods === 'string') return [...results, fail(CONTROL, podsCheck, pods)]
  if (pods.status !== 200) return [...results, fail(CONTROL, podsCheck, `cannot list the pods ${labelSelector} in ${ns}: ${statusMessage(pods)}`)]
  const items = list(pods.body.items).filter(isJson).filter((p) => field(p, 'metadata', 'deletionTimestamp') === undefined)
  if (items.length === 0) {
    results.push(fail(CONTROL, podsCheck, `no pod of ${ns}/${name} is running (selector ${labelSelector}); see why: kubectl -n ${ns} describe deployment ${name} (quota, Pod Security, image pull)`))
    return results
  }
  const notReady = items.filter((p) => !podReady(p))
  results.push(notReady.length === 0
    ? ok(CONTROL, podsCheck, `${items.length} of ${items.length} Ready`)
    : fail(CONTROL, podsCheck, `not Ready: ${notReady.map((p) => `${str(field(p, 'metadata', 'name')) ?? '?'} (${whyNotReady(p)})`).join(', ')}; see why: kubectl -n ${ns} describe pod <name>; kubectl -n ${ns} logs <name>`))
  return results
}

export function podReady (pod: unknown): boolean {
  return list(field(pod, 'status', 'conditions')).some((c) => field(c, 'type') === 'Ready' && field(c, 'status') === 'True')
}

/** The first reason a container of the pod gives for not running or not being ready. */
export function whyNotReady (pod: unknown): string {
  const statuses = [...list(field(pod, 'status', 'initContainerStatuses')), ...list(field(pod, 'status', 'containerStatuses'))]
  for (const s of statuses) {
    const name = str(field(s, 'name')) ?? '?'
    const waiting = str(field(s, 'state', 'waiting', 'reason'))
    if (waiting !== undefined) return `${name}: ${waiting}`
    const terminated = str(field(s, 'state', 'terminated', 'reason'))
    if (terminated !== undefined && terminated !== 'Completed') return `${name}: ${terminated}`
    if (field(s, 'ready') === false) return `${name} not ready${(num(field(s, 'restartCount')) ?? 0) > 0 ? `, ${String(field(s, 'restartCount'))} restarts` : ''}`
  }
  return str(field(pod, 'status', 'phase')) ?? 'no status yet'
}

/** The Secret's PEM under remora's names, or cert-manager's (a Certificate's Secret). */
const CA_KEYS = [{ root: 'root.pem', issuer: 'issuer.pem', issuerKey: 'issuer-key.pem' }, { root: 'ca.crt', issuer: 'tls.crt', issuerKey: 'tls.key' }] as const

/** The CA Secret parses as a CA (root, issuer, key: src/identity's checks), and when its root and issuer expire. */
async function checkCa (kube: KubeClient, names: InstallNames): Promise<{ results: CheckResult[], rootsPem?: string }> {
  const where = `${names.namespace}/${names.caSecret}`
  const check = `the CA Secret ${where} holds a valid CA`
  const r = await get(kube, `/api/v1/namespaces/${names.namespace}/secrets/${names.caSecret}`)
  if (typeof r === 'string') return { results: [fail(CA, check, r)] }
  if (r.status === 404) {
    return { results: [fail(CA, check, `Secret ${where} not found: the control plane creates it on its first start (REMORA_CA=secret-or-create:${where}), or you bring your own (secret:${where}); see why it did not: kubectl -n ${names.namespace} logs deployment/${names.deployment}`)] }
  }
  if (r.status === 403) return { results: [warn(CA, check, `you may not read Secret ${where} (${statusMessage(r)}): the CA is not checked; run remora check as someone who may get secrets in ${names.namespace}`)] }
  if (r.status !== 200) return { results: [fail(CA, check, `cannot read Secret ${where}: ${statusMessage(r)}`)] }
  const data = field(r.body, 'data')
  const decoded = (k: string): string | undefined => {
    const v = isJson(data) ? str(data[k]) : undefined
    return v === undefined ? undefined : Buffer.from(v, 'base64').toString('utf8')
  }
  const keys = CA_KEYS.find((k) => decoded(k.root) !== undefined) ?? CA_KEYS[0]
  const [rootPem, issuerPem, issuerKeyPem] = [decoded(keys.root), decoded(keys.issuer), decoded(keys.issuerKey)]
  if (rootPem === undefined || issuerPem === undefined || issuerKeyPem === undefined) {
    const missing = Object.values(keys).filter((k) => decoded(k) === undefined)
    return { results: [fail(CA, check, `Secret ${where} has no ${missing.join(', ')}; it needs ${Object.values(CA_KEYS[0]).join(', ')} (or cert-manager's ${Object.values(CA_KEYS[1]).join(', ')}); the control plane never overwrites it: fix it, or delete it and restart the control plane to create a new CA (every sidecar must then get new certificates)`)] }
  }
  const roots = certificatesOf(rootPem)
  const issuer = certificatesOf(issuerPem)[0]
  // The structure is checked at a moment when every certificate is valid; expiry is reported on its own below.
  const validFrom = [...roots, ...(issuer === undefined ? [] : [issuer])].map((c) => new Date(c.validFrom).getTime())
  const probe = validFrom.length === 0 ? names.now : new Date(Math.max(...validFrom))
  try {
    await checkCaInput({ rootPem, issuerPem, issuerKeyPem, trustDomain: names.trustDomain, now: probe, names: { root: `${where} key ${keys.root}`, issuer: `${where} key ${keys.issuer}`, issuerKey: `${where} key ${keys.issuerKey}` } })
  } catch (err) {
    return { results: [fail(CA, check, `${(err as Error).message}; the control plane will not start with it: fix the Secret (or delete it and restart the control plane to create a new CA)`)] }
  }
  const results = [ok(CA, check, `trust domain ${names.trustDomain}, ${keys.root === 'ca.crt' ? "cert-manager's keys" : "remora's keys"}`)]
  const rotate = 'replace it with a new root before it expires (every sidecar certificate chains to it): add the new root to the Secret beside the old one, restart the control plane, then retire the old root'
  for (const root of roots) results.push(expiryCheck(`the CA root "${cnOf(root)}" is valid`, root, names.now, rotate))
  results.push(expiryCheck(`the CA issuer "${cnOf(issuer)}" is valid`, issuer, names.now, 'issue a new issuer from the root and update the Secret, then restart the control plane'))
  return { results, rootsPem: rootPem }
}

const cnOf = (c: X509Certificate): string => /CN=([^\n,]+)/.exec(c.subject)?.[1] ?? c.subject

function expiryCheck (check: string, cert: X509Certificate, now: Date, fix: string): CheckResult {
  const e = expiryOf('it', new Date(cert.validFrom), new Date(cert.validTo), now, CA_WARN_WITHIN_MS, fix)
  return { group: CA, check, outcome: e.outcome, message: e.message.replace(/^it /, '') }
}

/**
 * The MutatingWebhookConfiguration, its caBundle against the CA's root, its Service and that Service's ready
 * endpoints. The webhook's HTTPS endpoint is inside the cluster: with --webhook-url (a port-forward) its serving
 * certificate is verified against the caBundle for the Service's DNS name, as the API server does.
 */
async function checkWebhook (kube: KubeClient, names: InstallNames, rootsPem: string | undefined): Promise<CheckResult[]> {
  const check = `the MutatingWebhookConfiguration ${names.webhook} is registered`
  const r = await get(kube, `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${names.webhook}`)
  if (typeof r === 'string') return [fail(WEBHOOK, check, r)]
  if (r.status === 404) return [fail(WEBHOOK, check, `not found: no pod is injected at creation (remora inject still works offline); ${APPLY}`)]
  if (r.status !== 200) return [fail(WEBHOOK, check, `cannot read it: ${statusMessage(r)}`)]
  const hooks = list(r.body.webhooks).filter(isJson)
  if (hooks.length === 0) return [fail(WEBHOOK, check, `it has no webhooks; ${APPLY} again`)]
  const results = [ok(WEBHOOK, check, `${hooks.length} webhook${hooks.length === 1 ? '' : 's'}, failurePolicy ${str(hooks[0].failurePolicy) ?? 'Fail'}`)]
  const certManager = str(field(r.body, 'metadata', 'annotations', 'cert-manager.io/inject-ca-from')) !== undefined
  let bundlePem: string | undefined
  for (const hook of hooks) {
    const hookName = str(hook.name) ?? '?'
    const bcheck = `the webhook ${hookName} trusts the mesh's CA (caBundle)`
    const bundle = str(field(hook, 'clientConfig', 'caBundle'))
    if (bundle === undefined || bundle === '') {
      results.push(warn(WEBHOOK, bcheck, certManager
        ? "caBundle is empty: cert-manager's cainjector fills it (cert-manager.io/inject-ca-from); check that cert-manager runs"
        : `caBundle is empty: the control plane fills it when it starts; until then the API server cannot call the injector. If it stays empty: kubectl -n ${names.namespace} logs deployment/${names.deployment}`))
      continue
    }
    bundlePem = Buffer.from(bundle, 'base64').toString('utf8')
    if (certificatesOf(bundlePem).length === 0) results.push(fail(WEBHOOK, bcheck, 'caBundle holds no PEM certificate: delete it (the control plane fills it again when it starts)'))
    else if (rootsPem === undefined) results.push(warn(WEBHOOK, bcheck, 'the CA could not be read, so the caBundle is not compared with its root'))
    else if (bundleHoldsRoots(bundlePem, rootsPem)) results.push(ok(WEBHOOK, bcheck))
    else if (certManager) results.push(warn(WEBHOOK, bcheck, "caBundle is not the remora CA's root; cert-manager's cainjector fills it (cert-manager.io/inject-ca-from), so the injector's certificate comes from cert-manager: fine if that is meant"))
    else results.push(fail(WEBHOOK, bcheck, `caBundle is not the root in Secret ${names.namespace}/${names.caSecret}: the API server will refuse the injector's certificate, and pods start without the sidecar; restart the control plane so it writes the root again (kubectl -n ${names.namespace} rollout restart deployment/${names.deployment})`))
  }

  const svc = field(hooks[0], 'clientConfig', 'service')
  const url = str(field(hooks[0], 'clientConfig', 'url'))
  if (!isJson(svc)) {
    results.push(warn(WEBHOOK, 'the webhook has a Service', `it calls ${url ?? 'no Service and no URL'} directly; its endpoint is not checked`))
    return results
  }
  const svcNs = str(svc.namespace) ?? names.namespace
  const svcName = str(svc.name) ?? names.webhook
  const port = num(svc.port) ?? 443
  const dnsName = `${svcName}.${svcNs}.svc`
  results.push(...await checkService(kube, svcNs, svcName))
  if (names.webhookUrl === undefined) {
    results.push(warn(WEBHOOK, `the injector answers HTTPS as ${dnsName}:${port}`, `not checked: the API server reaches it inside the cluster, remora check cannot; to check its certificate, kubectl -n ${svcNs} port-forward service/${svcName} 15017:${port} and run remora check --webhook-url https://127.0.0.1:15017`))
  } else if (bundlePem !== undefined) {
    results.push(await checkServing(names.webhookUrl, dnsName, bundlePem))
  } else {
    results.push(warn(WEBHOOK, `the injector at ${names.webhookUrl} serves a certificate for ${dnsName}`, 'not checked: there is no caBundle to verify it against'))
  }
  return results
}

async function checkService (kube: KubeClient, ns: string, name: string): Promise<CheckResult[]> {
  const check = `the webhook Service ${ns}/${name} exists`
  const r = await get(kube, `/api/v1/namespaces/${ns}/services/${name}`)
  if (typeof r === 'string') return [fail(WEBHOOK, check, r)]
  if (r.status === 404) return [fail(WEBHOOK, check, `not found: the API server cannot call the injector, so pods start without the sidecar; ${APPLY}`)]
  if (r.status !== 200) return [fail(WEBHOOK, check, `cannot read it: ${statusMessage(r)}`)]
  const results = [ok(WEBHOOK, check)]
  const echeck = `the webhook Service ${ns}/${name} has ready endpoints`
  const slices = await get(kube, `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices`, { labelSelector: `kubernetes.io/service-name=${name}` })
  if (typeof slices === 'string') return [...results, fail(WEBHOOK, echeck, slices)]
  if (slices.status !== 200) return [...results, fail(WEBHOOK, echeck, `cannot list its EndpointSlices: ${statusMessage(slices)}`)]
  // A missing `ready` condition means ready (discovery.k8s.io/v1).
  const endpoints = list(slices.body.items).flatMap((s) => list(field(s, 'endpoints')))
  const ready = endpoints.filter((e) => field(e, 'conditions', 'ready') !== false)
  results.push(ready.length > 0
    ? ok(WEBHOOK, echeck, `${ready.length} ready`)
    : fail(WEBHOOK, echeck, `${endpoints.length === 0 ? 'no endpoints' : `none of ${endpoints.length} endpoints ready`}: the injector is not running or not ready, so pods are created without the sidecar (failurePolicy Ignore) or refused (Fail); see why: kubectl -n ${ns} get pods; kubectl -n ${ns} describe service ${name}`))
  return results
}

/** A TLS handshake to `url`, the certificate verified against `bundlePem` for `dnsName`, as the API server does. */
async function checkServing (url: string, dnsName: string, bundlePem: string): Promise<CheckResult> {
  const check = `the injector at ${url} serves a certificate for ${dnsName} that the caBundle trusts`
  const u = new URL(url)
  const port = Number(u.port === '' ? 443 : u.port)
  return new Promise((resolve) => {
    const socket = tls.connect({ host: u.hostname, port, servername: dnsName, ca: bundlePem, rejectUnauthorized: false, checkServerIdentity: () => undefined, timeout: 10_000 })
    const done = (r: CheckResult): void => { socket.destroy(); resolve(r) }
    socket.once('secureConnect', () => {
      const peer = socket.getPeerX509Certificate()
      if (!socket.authorized) return done(fail(WEBHOOK, check, `its certificate does not chain to the caBundle (${String(socket.authorizationError)}): the API server refuses it; restart the injector so it takes a certificate from the current CA`))
      const wrongName = peer === undefined ? 'no certificate' : tls.checkServerIdentity(dnsName, peer.toLegacyObject())
      if (wrongName !== undefined) return done(fail(WEBHOOK, check, `its certificate is not for ${dnsName} (${typeof wrongName === 'string' ? wrongName : wrongName.message}): the API server refuses it`))
      done(ok(WEBHOOK, check, `valid until ${new Date(peer?.validTo ?? 0).toISOString().replace(/\.\d+Z$/, 'Z')}`))
    })
    socket.once('timeout', () => done(fail(WEBHOOK, check, 'no TLS handshake within 10 s; is the port-forward running?')))
    socket.once('error', (err: NodeJS.ErrnoException) => done(fail(WEBHOOK, check, `cannot connect (${err.code ?? err.message}); is the port-forward running (kubectl port-forward)?`)))
  })
}
