// The strict Kubernetes validator the manifest and inject tests rely on: what it accepts, what it refuses, and how it says so.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { Deployment } from 'kubernetes-models/apps/v1'
import { KNOWN_KINDS, SCHEMA_KUBERNETES_VERSION, validateStrict } from './k8s-schema.ts'

type Fields = Record<string, unknown>
interface TestDeployment { [field: string]: unknown, metadata: Fields, spec: { [field: string]: unknown, template: { [field: string]: unknown, spec: { [field: string]: unknown, containers: Fields[], initContainers?: Fields[] } } } }

function deployment (): TestDeployment {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace: 'demo', labels: { app: 'web' }, annotations: { 'remora.dev/inject': 'enabled' } },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: 'web' } },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: '25%' } },
      template: {
        metadata: { labels: { app: 'web' } },
        spec: {
          terminationGracePeriodSeconds: 45,
          securityContext: { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
          containers: [{
            name: 'app',
            image: 'ghcr.io/example/web:1.2.3',
            args: ['serve', '--port', '8080'],
            env: [{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }, { name: 'MODE', value: 'on' }],
            ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }],
            readinessProbe: { httpGet: { path: '/ready', port: 'http' }, periodSeconds: 2 },
            livenessProbe: { httpGet: { path: '/live', port: 8080 } },
            resources: { requests: { cpu: '100m', memory: '64Mi' }, limits: { cpu: 1, memory: '1Gi', 'ephemeral-storage': '1.5G' } },
            securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
            volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }],
          }],
          volumes: [{ name: 'tmp', emptyDir: { sizeLimit: '64Mi' } }],
        },
      },
    },
  }
}

t.test('a valid Deployment passes', async (t) => {
  t.same(validateStrict(deployment()), [])
})

t.test('a misspelled field fails, naming the object and the path; kubernetes-models alone lets it pass', async (t) => {
  const d = deployment()
  d.spec.template.spec.containers[0].resource = d.spec.template.spec.containers[0].resources
  delete d.spec.template.spec.containers[0].resources
  t.doesNotThrow(() => new Deployment(d as unknown as ConstructorParameters<typeof Deployment>[0]).validate(), 'kubernetes-models validate() accepts the misspelling (why this validator exists)')
  t.same(validateStrict(d), ['Deployment demo/web: spec.template.spec.containers[0].resource: unknown field'])
})

t.test('unknown fields are found at every depth, and at the top', async (t) => {
  const d = deployment()
  ;d.metadata.label = { app: 'web' }
  ;(d.spec.template.spec.containers[0].readinessProbe as { httpGet: Record<string, unknown> }).httpGet.paths = '/x'
  d.spec.template.spec.containers[0].securityContext = { capabilities: { drop: ['ALL'], remove: ['NET_RAW'] } }
  d.status2 = {}
  t.same(validateStrict(d).sort(), [
    'Deployment demo/web: metadata.label: unknown field',
    'Deployment demo/web: spec.template.spec.containers[0].readinessProbe.httpGet.paths: unknown field',
    'Deployment demo/web: spec.template.spec.containers[0].securityContext.capabilities.remove: unknown field',
    'Deployment demo/web: status2: unknown field',
  ])
})

t.test('wrong types fail: integer, boolean, string, array, object, and map values', async (t) => {
  const d = deployment()
  const c = d.spec.template.spec.containers[0]
  ;(c.ports as Array<Record<string, unknown>>)[0].containerPort = '8080'
  c.args = 'serve'
  c.tty = 'yes'
  c.env = [{ name: 'MODE', value: true }]
  ;(d.metadata as { labels: Record<string, unknown> }).labels.tier = 3
  d.spec.template.spec.initContainers = {} as never
  t.same(validateStrict(d).sort(), [
    'Deployment demo/web: metadata.labels.tier: expected string, got integer',
    'Deployment demo/web: spec.template.spec.containers[0].args: expected array, got string',
    'Deployment demo/web: spec.template.spec.containers[0].env[0].value: expected string, got boolean',
    'Deployment demo/web: spec.template.spec.containers[0].ports[0].containerPort: expected integer, got string',
    'Deployment demo/web: spec.template.spec.containers[0].tty: expected boolean, got string',
    'Deployment demo/web: spec.template.spec.initContainers: expected array, got object',
  ])
})

t.test('IntOrString takes a name or a number; Quantity a quantity string or a number', async (t) => {
  const svc = (targetPort: unknown): unknown => ({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'demo' }, spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort, appProtocol: 'http' }] } })
  t.same(validateStrict(svc('http')), [], 'targetPort: http')
  t.same(validateStrict(svc(8080)), [], 'targetPort: 8080')
  t.same(validateStrict(svc(true)), ['Service demo/web: spec.ports[0].targetPort: expected integer or string, got boolean'])
  t.same(validateStrict(svc(80.5)), ['Service demo/web: spec.ports[0].targetPort: 80.5 is not an int32'])
  const d = deployment()
  d.spec.template.spec.containers[0].resources = { requests: { cpu: '100 millicores', memory: ['64Mi'] } }
  t.same(validateStrict(d).sort(), [
    'Deployment demo/web: spec.template.spec.containers[0].resources.requests.cpu: "100 millicores" is not a quantity (such as 100m, 64Mi, 1.5)',
    'Deployment demo/web: spec.template.spec.containers[0].resources.requests.memory: expected a quantity (string or number), got array',
  ])
})

t.test('enums and required fields of the schema, plus a name and an image', async (t) => {
  const d = deployment()
  const c = d.spec.template.spec.containers[0]
  c.imagePullPolicy = 'Sometimes'
  delete c.image
  ;(c.ports as Array<Record<string, unknown>>).push({ name: 'metrics' })
  delete d.metadata.name
  delete d.spec.selector
  t.same(validateStrict(d).sort(), [
    'Deployment demo/<unnamed>: metadata.name: required field missing',
    'Deployment demo/<unnamed>: spec.selector: required field missing',
    'Deployment demo/<unnamed>: spec.template.spec.containers[0].image: required field missing',
    'Deployment demo/<unnamed>: spec.template.spec.containers[0].imagePullPolicy: "Sometimes" is not one of Always, IfNotPresent, Never',
    'Deployment demo/<unnamed>: spec.template.spec.containers[0].ports[1].containerPort: required field missing',
  ])
  delete c.name
  t.ok(validateStrict(d).includes('Deployment demo/<unnamed>: spec.template.spec.containers[0].name: required field missing'), 'a container needs a name')
})

t.test('a native sidecar (an init container with restartPolicy: Always, Kubernetes >= 1.29) passes', async (t) => {
  const d = deployment()
  d.spec.template.spec.initContainers = [{
    name: 'remora-proxy',
    image: 'ghcr.io/remora-mesh/remora:0.1.0',
    args: ['proxy'],
    restartPolicy: 'Always',
    startupProbe: { httpGet: { path: '/ready', port: 15000 }, periodSeconds: 1, failureThreshold: 60 },
    securityContext: { runAsUser: 2102, runAsNonRoot: true },
  }]
  t.same(validateStrict(d), [])
  d.spec.template.spec.initContainers[0].restartPolicyy = 'Always'
  t.same(validateStrict(d), ['Deployment demo/web: spec.template.spec.initContainers[0].restartPolicyy: unknown field'])
})

t.test('an unknown kind, or a kind under an apiVersion that is not checked, fails naming the kind', async (t) => {
  t.same(validateStrict({ apiVersion: 'monitoring.coreos.com/v1', kind: 'ServiceMonitor', metadata: { name: 'remora', namespace: 'remora-system' } }),
    ['ServiceMonitor remora-system/remora: unknown kind ServiceMonitor (apiVersion monitoring.coreos.com/v1): no schema to check it against'])
  t.same(validateStrict({ apiVersion: 'extensions/v1beta1', kind: 'Deployment', metadata: { name: 'web' } }),
    ['Deployment web: Deployment of apiVersion extensions/v1beta1 is not a kind this validator knows (it checks Deployment of apps/v1)'])
  t.same(validateStrict({ kind: 'Deployment', metadata: { name: 'web' } }), ['Deployment web: apiVersion: required field missing'])
  t.same(validateStrict(null), ['(document): expected a Kubernetes object, got null'])
})

t.test('every kind the mesh ships or injects is known', async (t) => {
  for (const k of ['v1 Namespace', 'v1 ServiceAccount', 'v1 ConfigMap', 'v1 Secret', 'v1 Service', 'v1 Pod', 'v1 List', 'apps/v1 Deployment', 'apps/v1 StatefulSet',
    'apps/v1 DaemonSet', 'apps/v1 ReplicaSet', 'batch/v1 Job', 'batch/v1 CronJob', 'policy/v1 PodDisruptionBudget', 'rbac.authorization.k8s.io/v1 Role',
    'rbac.authorization.k8s.io/v1 RoleBinding', 'rbac.authorization.k8s.io/v1 ClusterRole', 'rbac.authorization.k8s.io/v1 ClusterRoleBinding',
    'admissionregistration.k8s.io/v1 MutatingWebhookConfiguration']) t.ok(KNOWN_KINDS.includes(k), k)
})

t.test('the other kinds are checked as strictly: webhook, PDB, RBAC, CronJob, Secret, List', async (t) => {
  const webhook = {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name: 'remora-injector' },
    webhooks: [{
      name: 'inject.remora.dev',
      admissionReviewVersions: ['v1'],
      sideEffects: 'None',
      failurePolicy: 'Ignore',
      reinvocationPolicy: 'Never',
      clientConfig: { service: { name: 'remora-injector', namespace: 'remora-system', path: '/inject', port: 443 }, caBundle: 'Y2E=' },
      rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: 'Namespaced' }],
      namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system', 'remora-system'] }] },
      objectSelector: { matchExpressions: [{ key: 'remora.dev/inject', operator: 'NotIn', values: ['disabled'] }] },
    }],
  }
  t.same(validateStrict(webhook), [])
  t.same(validateStrict({ ...webhook, webhooks: [{ ...webhook.webhooks[0], failurePolicy: 'Ignored', timeout: 5, clientConfig: { ...webhook.webhooks[0].clientConfig, caBundle: 'not base64!' } }] }).sort(), [
    'MutatingWebhookConfiguration remora-injector: webhooks[0].clientConfig.caBundle: "not base64!" is not base64',
    'MutatingWebhookConfiguration remora-injector: webhooks[0].failurePolicy: "Ignored" is not one of Fail, Ignore',
    'MutatingWebhookConfiguration remora-injector: webhooks[0].timeout: unknown field',
  ])
  t.same(validateStrict({ apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', metadata: { name: 'c', namespace: 'n' }, spec: { minAvailable: 1, selector: { matchLabels: { app: 'c' } } } }), [])
  t.same(validateStrict({ apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', metadata: { name: 'c', namespace: 'n' }, spec: { maxUnavailable: '50%', selectors: {} } }),
    ['PodDisruptionBudget n/c: spec.selectors: unknown field'])
  t.same(validateStrict({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'r' }, rules: [{ apiGroups: [''], resources: ['pods'], verb: ['get'] }] }).sort(),
    ['ClusterRole r: rules[0].verb: unknown field', 'ClusterRole r: rules[0].verbs: required field missing'])
  t.same(validateStrict({ apiVersion: 'batch/v1', kind: 'CronJob', metadata: { name: 'c', namespace: 'n' }, spec: { schedule: '*/5 * * * *', jobTemplate: { spec: { template: { spec: { restartPolicy: 'OnFailure', containers: [{ name: 'c', image: 'busybox', resource: {} }] } } } } } }),
    ['CronJob n/c: spec.jobTemplate.spec.template.spec.containers[0].resource: unknown field'])
  t.same(validateStrict({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 's', namespace: 'n' }, type: 'Opaque', data: { 'ca.crt': 'Y2E=' }, stringData: { key: 'v' } }), [])
  t.same(validateStrict({ apiVersion: 'v1', kind: 'List', metadata: {}, items: [deployment(), { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'm', namespace: 'demo' }, datas: {} }] }),
    ['List items[1]: ConfigMap demo/m: datas: unknown field'])
  t.same(validateStrict({ apiVersion: 'v1', kind: 'List', item: [] }), ['List: item: unknown field', 'List: items: required field missing'])
})

t.test('the field lists come from the Kubernetes version the harness names', async (t) => {
  const pod = new URL('gen/models/V1Pod.js', import.meta.resolve('@kubernetes/client-node'))
  t.match(readFileSync(pod, 'utf8'), `OpenAPI spec version: release-${SCHEMA_KUBERNETES_VERSION}`)
})
