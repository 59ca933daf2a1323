// remora inject on real-world YAML: every workload gets the sidecar exactly as injectPod makes it, the
// output is valid under strict schema validation, everything else is byte-identical, comments and key
// order survive, and injecting twice changes nothing.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { parseAllDocuments } from 'yaml'
import { InjectSettings, readSettings } from '../../src/config/env.ts'
import { RemoraError } from '../../src/errors.ts'
import { injectPod } from '../../src/injection/pod.ts'
import { injectYaml, type InjectYamlOptions } from '../../src/inject/yaml.ts'
import { SCHEMA_KUBERNETES_VERSION, validateStrict } from '../harness/k8s-schema.ts'

const FIXTURES = new URL('../fixtures/inject/', import.meta.url)
const fixture = (name: string): string => readFileSync(new URL(name, FIXTURES), 'utf8')
const { namespaceAnnotations: _ns, ...MESH } = readSettings(InjectSettings, {}, new Map())
const OPTIONS: InjectYamlOptions = { source: 'app.yaml', mesh: MESH }

type Json = Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any

const docsOf = (text: string): Json[] => parseAllDocuments(text).map((d) => d.toJS() as Json)

/** The pod template of a workload (the object itself for a Pod). */
function templateOf (obj: Json): Json {
  if (obj.kind === 'Pod') return obj
  if (obj.kind === 'CronJob') return obj.spec.jobTemplate.spec.template
  return obj.spec.template
}

function thrown (fn: () => unknown): RemoraError {
  try { fn() } catch (err) { if (err instanceof RemoraError) return err; throw err }
  throw new Error('did not throw')
}

const WORKLOADS: Array<[string, string[]]> = [
  ['deployment.yaml', ['Deployment shop/web']],
  ['statefulset.yaml', ['StatefulSet payments/ledger']],
  ['cronjob.yaml', ['CronJob analytics/nightly-report']],
  ['pod-init.yaml', ['Pod default/api-0']],
  ['job.yaml', ['Job shop/backfill-orders']],
  ['multi.yaml', ['Deployment shop/checkout']],
  ['list.yaml', ['Deployment demo/greeter']],
]

t.test(`every fixture: injected as injectPod says, strictly valid (Kubernetes ${SCHEMA_KUBERNETES_VERSION} schemas), the same after a second run`, async (t) => {
  for (const [file, objects] of WORKLOADS) {
    const input = fixture(file)
    const { output, injected } = injectYaml(input, { ...OPTIONS, source: file })
    t.same(injected, objects, `${file}: injected ${objects.join(', ')}`)
    const before = docsOf(input)
    const after = docsOf(output)
    t.equal(after.length, before.length, `${file}: as many documents`)
    after.forEach((doc, i) => {
      t.same(validateStrict(doc), [], `${file} document ${i + 1} (${doc.kind}) is valid under strict validation`)
      const pairs: Array<[Json, Json]> = doc.kind === 'List' ? doc.items.map((item: Json, j: number) => [before[i].items[j], item]) : [[before[i], doc]]
      for (const [was, now] of pairs) {
        const name = `${now.kind} ${now.metadata.namespace}/${now.metadata.name}`
        if (!objects.includes(name)) { t.same(now, was, `${file}: ${name} unchanged`); continue }
        const expected = injectPod(templateOf(was) as { spec: unknown }, MESH, { object: name, workload: now.metadata.name })
        t.ok(expected.injected)
        t.same(templateOf(now).spec, expected.spec, `${file}: ${name}'s pod spec is exactly injectPod's`)
        t.same(templateOf(now).spec.initContainers.slice(0, 2).map((c: Json) => c.name), ['remora-init', 'remora-proxy'], `${file}: remora-init, then remora-proxy`)
        const { spec: _s, ...restNow } = templateOf(now)
        const { spec: _w, ...restWas } = templateOf(was)
        t.same(restNow, restWas, `${file}: ${name}: nothing changed beside the pod spec`)
      }
    })
    const twice = injectYaml(output, { ...OPTIONS, source: file })
    t.equal(twice.output, output, `${file}: injecting twice changes nothing, byte for byte`)
    t.same(twice.injected, [])
    t.same(twice.warnings.filter((w) => w.includes('already has the remora-proxy container')).length, objects.length)
  }
})

t.test('documents nothing was added to stay byte for byte; comments and key order of the rest stay', async (t) => {
  const input = fixture('multi.yaml')
  const { output } = injectYaml(input, OPTIONS)
  const deployment = input.indexOf('apiVersion: apps/v1')
  t.equal(output.slice(0, deployment), input.slice(0, deployment), 'the leading comment, the ConfigMap and the Service: byte-identical')
  for (const comment of ['# pinned', '# The end.']) t.ok(output.includes(comment), `${comment} kept`)
  t.match(output, /\n\.\.\. # The end\.\n$/, 'the document end marker and the comment after it (moved onto its line by the yaml package)')
  t.match(output, /\n {6}initContainers:\n {6}- name: remora-init\n/, 'lists stay flush with their key, as this file writes them')
  t.match(output, /selector: \{app: checkout\}/, 'flow maps keep their spacing')
  t.match(output, /\n {6}containers:\n {6}- name: checkout\n {8}image: ghcr.io\/example\/checkout:1\.12\.0 # pinned\n {8}envFrom:\n/, 'the container as written, key order kept')

  const deploymentOut = fixture('deployment.yaml')
  const injected = injectYaml(deploymentOut, OPTIONS).output
  for (const comment of ['# The storefront: an HTTP app and a cache warmer in one pod.', '# The database is reached directly, not through the mesh.']) {
    t.ok(injected.includes(comment), `${comment} kept`)
  }
  t.notOk(injected.includes('# a named port'), 'a comment about a value that was replaced goes with it')
  const spec = docsOf(injected)[0].spec.template.spec
  t.same(Object.keys(spec), ['serviceAccountName', 'terminationGracePeriodSeconds', 'securityContext', 'initContainers', 'containers', 'volumes'], 'initContainers goes before containers')
  t.same(Object.keys(spec.containers[0].livenessProbe), ['httpGet', 'periodSeconds', 'timeoutSeconds'], 'the tcpSocket became an httpGet where it stood')
  t.match(injected, /\n {6}initContainers:\n {8}- name: remora-init\n/, 'lists indented under their key, as this file writes them')

  const pod = injectYaml(fixture('pod-init.yaml'), OPTIONS).output
  t.match(pod, /readOnly: true\n {4}# Runs once, before the app: its traffic already goes through the sidecar\.\n {4}- name: migrate\n/, 'a comment above the first init container stays above it')

  const plain = fixture('multi.yaml').slice(0, deployment).replace(/---\n$/, '')
  t.equal(injectYaml(plain, OPTIONS).output, plain, 'no workload: the input, unchanged')
  for (const text of ['', '# only a comment\n', '---\n', 'just a scalar\n', '- a list\n']) t.equal(injectYaml(text, OPTIONS).output, text, JSON.stringify(text))
})

t.test('CRLF line ends and a byte order mark are kept', async (t) => {
  const input = '\uFEFF' + fixture('multi.yaml').replace(/\n/g, '\r\n')
  const { output, injected } = injectYaml(input, OPTIONS)
  t.same(injected, ['Deployment shop/checkout'])
  t.ok(output.startsWith('\uFEFF# Everything the checkout service needs'), 'the byte order mark')
  t.notMatch(output, /[^\r]\n/, 'every line ends in CRLF')
  t.equal(injectYaml(output, OPTIONS).output, output, 'and a second run changes nothing')
  const first = injectYaml('\uFEFF' + fixture('job.yaml'), OPTIONS).output
  t.ok(first.startsWith('\uFEFFapiVersion: batch/v1\n'), 'a changed first document keeps it too')
})

t.test('a workload kind of another API group is not a workload', async (t) => {
  const text = 'apiVersion: example.com/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {template: {spec: {containers: [{name: a, image: b}]}}}\n'
  t.same(injectYaml(text, OPTIONS), { output: text, injected: [], warnings: [] })
})

t.test('workloads left alone are named on one line each, with file and line', async (t) => {
  const list = injectYaml(fixture('list.yaml'), OPTIONS)
  t.same(list.warnings, ["app.yaml:41: DaemonSet demo/node-agent: hostNetwork: true, so the pod shares the node's network and remora init would redirect the node's traffic; not injected"])
  const disabled = fixture('deployment.yaml').replace('remora.dev/log-level: debug', 'remora.dev/inject: disabled')
  const skipped = injectYaml(disabled, OPTIONS)
  t.equal(skipped.output, disabled, 'disabled: passed through unchanged')
  t.same(skipped.warnings, ['app.yaml:2: Deployment shop/web: remora.dev/inject is disabled on the pod; left as it is'])
  const owner = fixture('job.yaml').replace('  namespace: shop\n', '  namespace: shop\n  annotations:\n    remora.dev/inject: disabled\n')
  t.same(injectYaml(owner, OPTIONS).warnings, ["app.yaml:1: Job shop/backfill-orders: remora.dev/inject is disabled on the Job's own metadata; left as it is"])
  const ns = injectYaml(fixture('job.yaml'), { ...OPTIONS, namespaceAnnotations: { 'remora.dev/inject': 'disabled', 'kubernetes.io/metadata.name': 'shop' } })
  t.same(ns.warnings, ['app.yaml:1: Job shop/backfill-orders: remora.dev/inject is disabled on --namespace-annotations; left as it is'])
  const enabled = fixture('job.yaml').replace('    spec:\n      serviceAccountName', '    metadata:\n      annotations: {remora.dev/inject: enabled}\n    spec:\n      serviceAccountName')
  t.same(injectYaml(enabled, { ...OPTIONS, namespaceAnnotations: { 'remora.dev/inject': 'disabled' } }).injected, ['Job shop/backfill-orders'], "the workload's own enabled wins over the namespace")
})

t.test('bad annotations stop everything, naming file, line, object and annotation', async (t) => {
  const bad = fixture('multi.yaml').replace('    metadata:\n      labels: {app: checkout}', '    metadata:\n      labels: {app: checkout}\n      annotations:\n        remora.dev/log-level: loud\n        remora.dev/proxy-cpu-request: lots')
    .replace('  name: checkout\n  namespace: shop\nspec:\n  replicas', '  name: checkout\n  namespace: shop\n  annotations:\n    remora.dev/opaque-ports: "6379"\nspec:\n  replicas')
  const err = thrown(() => injectYaml(bad + fixture('statefulset.yaml').replace('template:\n    metadata:', 'template:\n    metadata:\n      annotations: {remora.dev/proxy-image: ""}'), OPTIONS))
  t.equal(err.code, 'REMORA_INJECT_ANNOTATION')
  t.match(err.message, /^3 problems, nothing written:\n/)
  t.match(err.message, /\n {2}app\.yaml:30: annotation remora\.dev\/log-level in Deployment shop\/checkout: expected one of fatal, error, warn, info, debug, trace, silent, got "loud"\n/)
  t.match(err.message, /\n {2}app\.yaml:30: annotation remora\.dev\/proxy-cpu-request in Deployment shop\/checkout: expected a Kubernetes quantity/)
  t.match(err.message, /\n {2}app\.yaml:30: annotation remora\.dev\/opaque-ports in Deployment shop\/checkout \(the Deployment's own metadata\): only remora\.dev\/inject is read there; pod settings go on the pod template \(spec\.template\.metadata\.annotations\), which the sidecar reads$/)

  const named = thrown(() => injectYaml(fixture('deployment.yaml').replace('port: http            # a named port', 'port: https'), OPTIONS))
  t.equal(named.code, 'REMORA_INJECT_OBJECT')
  t.equal(named.message, 'app.yaml:2: Deployment shop/web: container web, readinessProbe: port "https" is not a named port of container web (its named ports: http=8080, metrics=9090, dns=5353); nothing written')
})

t.test('YAML syntax errors name the file, line and column', async (t) => {
  const err = thrown(() => injectYaml('apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  name: b\n---\nspec: [\n', OPTIONS))
  t.equal(err.code, 'REMORA_INJECT_YAML')
  t.match(err.message, /^not valid YAML, nothing written:\n {2}app\.yaml:5:3: Map keys must be unique\n {2}app\.yaml:8:1: /)
})

t.test('an anchor or alias where the sidecar must be written is refused; elsewhere it is fine', async (t) => {
  const shared = `apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: web, namespace: shop}
  spec:
    selector: {matchLabels: {app: web}}
    template:
      spec:
        containers: &containers
        - name: web
          image: w
          readinessProbe: {tcpSocket: {port: 8080}}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: copy, namespace: shop, annotations: {remora.dev/inject: disabled}}
  spec:
    selector: {matchLabels: {app: copy}}
    template:
      spec:
        containers: *containers
`
  const err = thrown(() => injectYaml(shared, OPTIONS))
  t.match(err.message, /^app\.yaml:1: cannot edit items\.0\.spec\.template\.spec\.containers\.0\.readinessProbe\.tcpSocket: it is written with a YAML anchor, alias or merge key \(&, \*, <<\) and other places would change with it; write it out in full; nothing written$/, 'the disabled copy would have changed through the alias')
  const labels = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop, labels: &labels {app: web}}
spec:
  selector: {matchLabels: *labels}
  template:
    metadata: {labels: *labels}
    spec:
      containers:
        - name: web
          image: w
`
  const { output } = injectYaml(labels, OPTIONS)
  t.same(validateStrict(docsOf(output)[0]), [])
  t.match(output, /selector: \{matchLabels: \*labels\}/, 'the alias of the labels is kept')
  const crossing = thrown(() => injectYaml(`${labels}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, labels: *labels}\n`, OPTIONS))
  t.equal(crossing.code, 'REMORA_INJECT_YAML')
  t.match(crossing.message, /^app\.yaml:13: Unresolved alias/, 'anchors do not cross documents')
})

t.test('kubectl style input (YAML 1.1): values that 1.1 reads as numbers or booleans are quoted', async (t) => {
  const { output } = injectYaml(fixture('list.yaml'), OPTIONS)
  t.match(output, /name: REMORA_APP_PORTS\n {12}value: "50051"\n/)
  const yes = injectYaml('apiVersion: v1\nkind: Pod\nmetadata: {name: "on"}\nspec:\n  containers: [{name: a, image: b}]\n', OPTIONS).output
  t.match(yes, /name: OTEL_SERVICE_NAME\n {10}value: "on"\n/, 'a workload named on stays a string for kubectl')
})
