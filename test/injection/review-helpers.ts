// Helpers of the admission webhook tests: AdmissionReviews as the API server sends them, POSTed over HTTPS as it
// does, and the Deployment whose pod `remora inject` and the webhook must inject alike.
import https from 'node:https'
import { parse } from 'yaml'
import { injectYaml } from '../../src/inject/yaml.ts'
import type { PatchOp } from '../../src/injection/patch.ts'
import type { MeshWide } from '../../src/injection/pod.ts'

/** The webhook Service's name, as the API server dials it. */
export const SERVICE_NAME = 'remora-injector.remora-system.svc'

export interface Answer { status: number, contentType: string | undefined, text: string, json?: { apiVersion?: string, kind?: string, response?: { uid?: string, allowed?: boolean, patchType?: string, patch?: string, status?: { message?: string, code?: number } } } }

/** POSTs `body` to the webhook as the API server would (TLS to the Service's name, checked against `ca`). */
export async function post (port: number, ca: string, body: string | Buffer, path = '/inject', method = 'POST'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path, method, servername: SERVICE_NAME, ca, headers: { 'content-type': 'application/json' }, agent: false }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { text += c })
      res.on('end', () => {
        let json: Answer['json']
        try { json = JSON.parse(text) as Answer['json'] } catch { json = undefined }
        resolve({ status: res.statusCode ?? 0, contentType: res.headers['content-type'], text, json })
      })
    })
    req.on('error', reject)
    req.end(body)
  })
}

export const review = (uid: string, pod: unknown, namespace = 'demo', extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  request: {
    uid, kind: { group: '', version: 'v1', kind: 'Pod' }, resource: { group: '', version: 'v1', resource: 'pods' },
    requestKind: { group: '', version: 'v1', kind: 'Pod' }, requestResource: { group: '', version: 'v1', resource: 'pods' },
    namespace, operation: 'CREATE', userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller' },
    object: pod, oldObject: null, dryRun: false, options: { kind: 'CreateOptions', apiVersion: 'meta.k8s.io/v1' },
    ...extra,
  },
})

export const patchOf = (a: Answer): PatchOp[] => JSON.parse(Buffer.from(a.json?.response?.patch ?? '', 'base64').toString('utf8')) as PatchOp[]

/** A Deployment with two containers, probes of every kind and an init container, as a user writes it. */
export const DEPLOYMENT = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
spec:
  selector:
    matchLabels: { app: web }
  template:
    metadata:
      labels: { app: web }
      annotations:
        remora.dev/skip-outbound-ports: "5432"
    spec:
      serviceAccountName: web
      initContainers:
        - name: migrate
          image: web:1
          args: [migrate]
      containers:
        - name: web
          image: web:1
          ports:
            - { name: http, containerPort: 8080 }
          readinessProbe:
            httpGet: { path: /healthz, port: http }
          livenessProbe:
            tcpSocket: { port: 8080 }
            periodSeconds: 5
        - name: metrics
          image: exporter:2
          ports:
            - { containerPort: 9100 }
`

/** The pod the ReplicaSet controller creates from that Deployment: generateName, no name, no namespace. */
export function replicaSetPod (): Record<string, unknown> {
  const template = (parse(DEPLOYMENT) as { spec: { template: { metadata: Record<string, unknown>, spec: Record<string, unknown> } } }).spec.template
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      generateName: 'web-6f7c9d8b5-',
      labels: { ...(template.metadata.labels as Record<string, string>), 'pod-template-hash': '6f7c9d8b5' },
      annotations: template.metadata.annotations,
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-6f7c9d8b5', uid: '6b1d7a7e-0000-4000-8000-000000000001', controller: true, blockOwnerDeletion: true }],
    },
    // What the API server has defaulted by the time mutating webhooks run.
    spec: { ...template.spec, restartPolicy: 'Always', terminationGracePeriodSeconds: 30, dnsPolicy: 'ClusterFirst', schedulerName: 'default-scheduler' },
  }
}

/** The injected pod spec `remora inject` writes for the Deployment, with the API server's defaults added as to the pod. */
export function injectedByRemoraInject (mesh: MeshWide): unknown {
  const out = parse(injectYaml(DEPLOYMENT, { source: 'web.yaml', mesh }).output) as { spec: { template: { spec: Record<string, unknown> } } }
  return { ...out.spec.template.spec, restartPolicy: 'Always', terminationGracePeriodSeconds: 30, dnsPolicy: 'ClusterFirst', schedulerName: 'default-scheduler' }
}
