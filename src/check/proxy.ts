// `remora check --proxy`: each meshed pod's sidecar as the API server sees it (present, started, ready), its image
// against this remora's version, and its certificate's expiry read from the sidecar's /metrics through the API
// server's pods/proxy subresource (the one admin path open beyond loopback).
import { PROXY_CERT_WARN_WITHIN_MS, expiryOf, imageTag, sameVersion } from './certs.ts'
import { field, isJson, list, statusMessage, str, Unreachable, type Json, type KubeClient } from './kube.ts'
import { fail, ok, warn, type CheckResult } from './result.ts'

const DATA = 'remora-data-plane'
/** The sidecar's container name, as remora inject and the injector write it. */
export const PROXY_CONTAINER = 'remora-proxy'
/** The sidecar's admin port: /metrics there is open to all (the rest of the admin API is loopback-only). */
export const PROXY_ADMIN_PORT = 15000
const EXPIRY_METRIC = 'remora_certificate_expiry_timestamp_seconds'

export interface ProxyScope {
  /** Undefined: every namespace. */
  readonly namespace?: string
  readonly pod?: string
  /** This remora's version (package.json), or undefined when it cannot be told. */
  readonly version: string | undefined
  readonly now: Date
}

/** The pod's sidecar container and how it is run: native (init container, restartPolicy Always) or a plain container. */
export function proxyContainer (pod: unknown): { container: Json, init: boolean, native: boolean } | undefined {
  const init = list(field(pod, 'spec', 'initContainers')).filter(isJson).find((c) => c.name === PROXY_CONTAINER)
  if (init !== undefined) return { container: init, init: true, native: init.restartPolicy === 'Always' }
  const plain = list(field(pod, 'spec', 'containers')).filter(isJson).find((c) => c.name === PROXY_CONTAINER)
  return plain === undefined ? undefined : { container: plain, init: false, native: false }
}

export async function checkProxies (kube: KubeClient, scope: ProxyScope): Promise<CheckResult[]> {
  const where = scope.namespace === undefined ? 'any namespace' : `namespace ${scope.namespace}`
  let pods: Json[]
  try {
    if (scope.pod !== undefined && scope.namespace !== undefined) {
      const r = await kube.get(`/api/v1/namespaces/${scope.namespace}/pods/${scope.pod}`)
      if (r.status === 404) return [fail(DATA, `pod ${scope.namespace}/${scope.pod} has the sidecar`, `no pod ${scope.pod} in ${where}: kubectl -n ${scope.namespace} get pods`)]
      if (r.status !== 200) return [fail(DATA, `pod ${scope.namespace}/${scope.pod} has the sidecar`, `cannot read it: ${statusMessage(r)}`)]
      pods = [r.body]
    } else {
      const r = await kube.get(scope.namespace === undefined ? '/api/v1/pods' : `/api/v1/namespaces/${scope.namespace}/pods`)
      if (r.status !== 200) return [fail(DATA, `the pods in ${where} can be listed`, statusMessage(r))]
      pods = list(r.body.items).filter(isJson)
    }
  } catch (err) {
    if (!(err instanceof Unreachable)) throw err
    return [fail(DATA, `the pods in ${where} can be read`, `cannot ask the API server (${err.message})`)]
  }
  // Finished pods (a Job's) have no running sidecar to check.
  const running = pods.filter((p) => !['Succeeded', 'Failed'].includes(str(field(p, 'status', 'phase')) ?? ''))
  const meshed = running.filter((p) => proxyContainer(p) !== undefined)
  const nameOf = (p: Json): string => `${str(field(p, 'metadata', 'namespace')) ?? '?'}/${str(field(p, 'metadata', 'name')) ?? '?'}`
  const results: CheckResult[] = []
  if (scope.pod !== undefined && meshed.length === 0) {
    return [fail(DATA, `pod ${scope.namespace ?? ''}/${scope.pod} has the sidecar`, `it has no ${PROXY_CONTAINER} container: it was created before injection was enabled, or injection is off for it (remora.dev/inject); enable it on the namespace (kubectl label namespace ${scope.namespace ?? '<ns>'} remora.dev/inject=enabled) and recreate the pod, or pipe its workload through remora inject`)]
  }
  if (meshed.length === 0) {
    return [fail(DATA, `meshed pods in ${where}`, `no running pod has a ${PROXY_CONTAINER} container; enable injection (kubectl label namespace ${scope.namespace ?? '<ns>'} remora.dev/inject=enabled) and restart the workloads (kubectl rollout restart deployment -n ${scope.namespace ?? '<ns>'}), or pipe them through remora inject`)]
  }
  const unmeshed = running.filter((p) => proxyContainer(p) === undefined)
  if (unmeshed.length > 0) {
    results.push(warn(DATA, `every running pod in ${where} has the sidecar`, `${unmeshed.length} without: ${unmeshed.slice(0, 5).map(nameOf).join(', ')}${unmeshed.length > 5 ? ', …' : ''}; if they should be meshed, recreate them with injection enabled (remora.dev/inject: disabled leaves them out on purpose)`))
  }
  for (const pod of meshed) results.push(...await checkPod(kube, pod, nameOf(pod), scope))
  return results
}

async function checkPod (kube: KubeClient, pod: Json, name: string, scope: ProxyScope): Promise<CheckResult[]> {
  const found = proxyContainer(pod)
  if (found === undefined) return []
  const [ns, podName] = name.split('/')
  const logs = `kubectl -n ${ns} logs ${podName} -c ${PROXY_CONTAINER}`
  const statuses = found.init
    ? list(field(pod, 'status', 'initContainerStatuses'))
    : list(field(pod, 'status', 'containerStatuses'))
  const status = statuses.find((s) => field(s, 'name') === PROXY_CONTAINER)
  const how = found.native ? 'native sidecar' : 'plain container'
  const readyCheck = `${name}: the sidecar is ready`
  const results: CheckResult[] = []
  if (found.init && !found.native) {
    results.push(fail(DATA, readyCheck, `${PROXY_CONTAINER} is an init container without restartPolicy: Always, so it never exits and the app never starts; the API server dropped the field (Kubernetes older than 1.29?) or it was edited out: upgrade the cluster and recreate the pod`))
  } else if (status === undefined) {
    results.push(fail(DATA, readyCheck, `${PROXY_CONTAINER} has no status yet (pod ${str(field(pod, 'status', 'phase')) ?? 'Pending'}); see why: kubectl -n ${ns} describe pod ${podName}`))
  } else if (field(status, 'ready') === true && field(status, 'started') !== false) {
    results.push(ok(DATA, readyCheck, `${how}, ${Number(field(status, 'restartCount') ?? 0)} restarts`))
  } else {
    const waiting = str(field(status, 'state', 'waiting', 'reason'))
    const terminated = str(field(status, 'state', 'terminated', 'reason'))
    const state = waiting ?? terminated ?? (field(status, 'state', 'running') !== undefined ? 'running, not ready (its /ready says why: no certificate or no endpoints yet)' : 'not running')
    results.push(fail(DATA, readyCheck, `${PROXY_CONTAINER} is ${state}${found.native ? '; the app containers start only once it is ready' : ''}; see why: ${logs}`))
  }

  const image = str(found.container.image) ?? ''
  const tag = imageTag(image)
  const versionCheck = `${name}: the sidecar's version matches this remora`
  if (scope.version === undefined) results.push(warn(DATA, versionCheck, `runs ${image}; this remora's own version is unknown`))
  else if (tag === undefined) results.push(warn(DATA, versionCheck, `runs ${image}, which names no version tag; this remora is ${scope.version}`))
  else if (sameVersion(tag, scope.version)) results.push(ok(DATA, versionCheck, tag))
  else results.push(warn(DATA, versionCheck, `runs ${tag}, this remora is ${scope.version}: upgrade the mesh (kubectl apply -k k8s/ of this version), then restart the workload (kubectl -n ${ns} rollout restart deployment/<name>) so it is injected again`))

  results.push(await checkCertificate(kube, ns, podName, name, scope.now))
  return results
}

/** The sidecar's certificate expiry, from its /metrics through the API server (needs get on pods/proxy). */
async function checkCertificate (kube: KubeClient, ns: string, podName: string, name: string, now: Date): Promise<CheckResult> {
  const check = `${name}: the sidecar's certificate is valid`
  const byHand = `kubectl -n ${ns} port-forward pod/${podName} ${PROXY_ADMIN_PORT} and read ${EXPIRY_METRIC} from http://127.0.0.1:${PROXY_ADMIN_PORT}/metrics`
  let text: string
  try {
    const r = await kube.get(`/api/v1/namespaces/${ns}/pods/${podName}:${PROXY_ADMIN_PORT}/proxy/metrics`)
    if (r.status !== 200) return warn(DATA, check, `not checked: its /metrics cannot be read through the API server (${statusMessage(r)}; that needs get on pods/proxy, and the sidecar running); by hand: ${byHand}`)
    text = r.text
  } catch (err) {
    if (!(err instanceof Unreachable)) throw err
    return warn(DATA, check, `not checked: ${err.message}; by hand: ${byHand}`)
  }
  const m = new RegExp(`^${EXPIRY_METRIC}(?:\\{[^}]*\\})?\\s+(\\S+)`, 'm').exec(text)
  const seconds = m === null ? NaN : Number(m[1])
  if (!Number.isFinite(seconds) || seconds <= 0) return warn(DATA, check, 'the sidecar has no workload certificate: mutual TLS is off for it (no trust anchors), or it has not got one yet (its /ready says which)')
  const e = expiryOf('its certificate', new Date(0), new Date(seconds * 1000), now, PROXY_CERT_WARN_WITHIN_MS,
    `renewal is failing: see ${`kubectl -n ${ns} logs ${podName} -c ${PROXY_CONTAINER}`} and the control plane's logs`)
  return { group: DATA, check, outcome: e.outcome, message: e.message.replace(/^its certificate /, '') }
}
