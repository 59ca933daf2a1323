// Helpers of the remora check tests: the Kubernetes stand-in holding a healthy install (as `kubectl apply -k k8s/`
// and a running control plane leave it), and `remora check` run as a child process against it.
import { execFile } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { CertificateAuthority, type CreateOptions } from '../../src/identity/ca.ts'
import { endpointSlice, FakeKubeApi, namespace, pod, service, type KubeObject } from '../harness/kube-api.ts'
import type { Teardown } from '../harness/mesh.ts'
import { CLI } from '../harness/mesh.ts'

export const NS = 'remora-system'
export const DNS_NAME = 'remora-injector.remora-system.svc'

export interface Cluster { kube: FakeKubeApi, kubeconfig: string, ca: CertificateAuthority }

/** A fresh stand-in API server, its kubeconfig file, and a CA (made with `caOptions`) for the install. */
export async function cluster (t: Teardown, caOptions: Partial<CreateOptions> = {}): Promise<Cluster> {
  const kube = await FakeKubeApi.start()
  t.teardown(() => kube.close())
  const kubeconfig = join(mkdtempSync(join(tmpdir(), 'remora-check-')), 'kubeconfig')
  writeFileSync(kubeconfig, kube.kubeConfig().exportConfig())
  const ca = await CertificateAuthority.create({ trustDomain: 'cluster.local', ...caOptions })
  return { kube, kubeconfig, ca }
}

/** The remora-control Deployment as the deployment controller reports it: `ready` of `replicas` ready. */
export function controlDeployment (replicas: number, ready: number): KubeObject {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'remora-control', namespace: NS, generation: 1, labels: { 'app.kubernetes.io/name': 'remora-control' } },
    spec: { replicas, selector: { matchLabels: { 'app.kubernetes.io/name': 'remora-control' } }, template: { metadata: { labels: { 'app.kubernetes.io/name': 'remora-control' } }, spec: { containers: [{ name: 'control', image: 'ghcr.io/remora-mesh/remora:0.1.0' }] } } },
    status: { observedGeneration: 1, replicas, updatedReplicas: replicas, availableReplicas: ready, ...(ready > 0 && { readyReplicas: ready }) },
  }
}

/** A control-plane pod with its Ready condition (and container status) as kubelet reports it. */
export function controlPod (name: string, ready: boolean): KubeObject {
  const p = pod(NS, name, { labels: { 'app.kubernetes.io/name': 'remora-control' }, serviceAccountName: 'remora-control' })
  const status = p.status as Record<string, unknown>
  status.conditions = [
    { type: 'PodScheduled', status: 'True', lastProbeTime: null, lastTransitionTime: '2025-01-01T00:00:00Z' },
    { type: 'Ready', status: ready ? 'True' : 'False', lastProbeTime: null, lastTransitionTime: '2025-01-01T00:00:00Z', ...(!ready && { reason: 'ContainersNotReady', message: 'containers with unready status: [control]' }) },
  ]
  status.containerStatuses = [ready
    ? { name: 'app', ready: true, started: true, restartCount: 0, image: 'app:latest', imageID: '', state: { running: { startedAt: '2025-01-01T00:00:00Z' } } }
    : { name: 'app', ready: false, started: false, restartCount: 4, image: 'app:latest', imageID: '', state: { waiting: { reason: 'CrashLoopBackOff', message: 'back-off 40s restarting failed container' } } }]
  return p
}

/** The injector's MutatingWebhookConfiguration, its caBundle the given PEM ('' for none yet). */
export function webhookConfiguration (caBundlePem: string): KubeObject {
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name: 'remora-injector', labels: { 'app.kubernetes.io/part-of': 'remora' } },
    webhooks: [{
      name: 'inject.remora.dev',
      admissionReviewVersions: ['v1'],
      sideEffects: 'None',
      failurePolicy: 'Ignore',
      clientConfig: { service: { namespace: NS, name: 'remora-injector', path: '/inject', port: 443 }, ...(caBundlePem !== '' && { caBundle: Buffer.from(caBundlePem).toString('base64') }) },
      rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: '*' }],
      namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system', NS] }] },
      objectSelector: {},
      reinvocationPolicy: 'Never',
      matchPolicy: 'Equivalent',
      timeoutSeconds: 10,
    }],
  }
}

/** Everything a healthy install shows the API server: parts may be replaced or left out to break it. */
export function install (c: Cluster, opts: { skip?: Array<'ca' | 'webhook' | 'endpoints'>, deployment?: KubeObject, pods?: KubeObject[], caBundle?: string } = {}): void {
  const { kube, ca } = c
  const skip = new Set(opts.skip ?? [])
  kube.apply(namespace(NS))
  kube.apply(opts.deployment ?? controlDeployment(2, 2))
  for (const p of opts.pods ?? [controlPod('remora-control-a', true), controlPod('remora-control-b', true)]) kube.apply(p)
  const pem = ca.export()
  if (!skip.has('ca')) kube.putSecret(NS, 'remora-ca', { 'root.pem': pem.rootPem, 'issuer.pem': pem.issuerPem, 'issuer-key.pem': pem.issuerKeyPem }, { labels: { 'app.kubernetes.io/managed-by': 'remora' } })
  if (!skip.has('webhook')) kube.apply(webhookConfiguration(opts.caBundle ?? pem.rootPem))
  kube.apply(service(NS, 'remora-injector', { ports: [{ name: 'https-webhook', port: 443, targetPort: 15017 }], selector: { 'app.kubernetes.io/name': 'remora-control' } }))
  kube.apply(endpointSlice(NS, 'remora-injector-abcde', 'remora-injector', {
    ports: [{ name: 'https-webhook', port: 15017 }],
    endpoints: skip.has('endpoints') ? [] : [{ addresses: ['10.244.0.10'], conditions: { ready: true, serving: true, terminating: false }, targetRef: { kind: 'Pod', name: 'remora-control-a', namespace: NS } }],
  }))
}

export interface Run { code: number, stdout: string, stderr: string }

/** `remora check <args>` as a user runs it, with KUBECONFIG pointing at the stand-in. */
export async function check (c: Cluster, ...args: string[]): Promise<Run> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [CLI, 'check', ...args], { env: { ...process.env, KUBECONFIG: c.kubeconfig } })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code: number, stdout: string, stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}

export interface JsonReport { success: boolean, summary: { ok: number, warn: number, fail: number }, checks: Array<{ group: string, check: string, outcome: 'ok' | 'warn' | 'fail', message: string }> }

/** `remora check <args> --output json`, parsed. */
export async function checkJson (c: Cluster, ...args: string[]): Promise<{ code: number, report: JsonReport }> {
  const r = await check(c, ...args, '--output', 'json')
  try {
    return { code: r.code, report: JSON.parse(r.stdout) as JsonReport }
  } catch (err) {
    throw new Error(`remora check did not print JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`, { cause: err })
  }
}

/** The line of a text report for the check whose title matches. */
export function line (stdout: string, title: RegExp): string {
  return stdout.split('\n').find((l) => /^[√‼×] /.test(l) && title.test(l)) ?? `(no line matching ${String(title)} in:\n${stdout})`
}
