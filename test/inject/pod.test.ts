// injectPod: the pod the injector makes, decision by decision (init container, native sidecar, probes
// through the admin port, annotations checked and applied, pods left alone and why).
import t from 'tap'
import type { V1Container, V1PodSpec } from '@kubernetes/client-node'
import { InjectSettings, ProxySettings, readSettings } from '../../src/config/env.ts'
import { RemoraError } from '../../src/errors.ts'
import { injectPod, KNOWN_POD_ANNOTATIONS, type MeshWide, type PodInjection } from '../../src/injection/pod.ts'
import { parseAppProbes } from '../../src/parse/app-probes.ts'
import { validateStrict } from '../harness/k8s-schema.ts'

const { namespaceAnnotations: _ns, ...MESH } = readSettings(InjectSettings, {}, new Map())
const TARGET = { object: 'Deployment shop/web', workload: 'web' }

function webPod (annotations: Record<string, unknown> = {}, spec: Record<string, unknown> = {}): { metadata: { annotations: Record<string, unknown> }, spec: Record<string, unknown> } {
  return {
    metadata: { annotations },
    spec: {
      serviceAccountName: 'web',
      containers: [
        {
          name: 'web',
          image: 'ghcr.io/example/web:1',
          ports: [{ name: 'http', containerPort: 8080 }, { name: 'metrics', containerPort: 9090 }, { name: 'dns', containerPort: 5353, protocol: 'UDP' }],
          readinessProbe: { httpGet: { path: '/healthz', port: 'http', httpHeaders: [{ name: 'X-Probe', value: 'kubelet' }] }, periodSeconds: 5, failureThreshold: 3 },
          livenessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 10, timeoutSeconds: 2 },
          startupProbe: { exec: { command: ['/bin/check'] }, failureThreshold: 30 },
        },
        {
          name: 'worker',
          image: 'ghcr.io/example/worker:1',
          ports: [{ name: 'admin', containerPort: 9443 }, { containerPort: 8080 }],
          livenessProbe: { httpGet: { path: 'live', port: '9443', scheme: 'HTTPS' } },
          readinessProbe: { grpc: { port: 9444 } },
          startupProbe: { httpGet: { host: 'example.com', path: '/', port: 80 } },
        },
      ],
      volumes: [{ name: 'config', configMap: { name: 'web-config' } }],
      ...spec,
    },
  }
}

function injected (r: PodInjection): V1PodSpec {
  if (!r.injected) throw new Error(`not injected: ${r.why}`)
  return r.spec
}

const proxyOf = (spec: V1PodSpec): V1Container => spec.initContainers?.find((c) => c.name === 'remora-proxy') as V1Container
const envOf = (c: V1Container): Record<string, unknown> => Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom]))

function thrown (fn: () => unknown): RemoraError {
  try { fn() } catch (err) { if (err instanceof RemoraError) return err; throw err }
  throw new Error('did not throw')
}

t.test('remora-init runs first, as root with NET_ADMIN and NET_RAW only, reading the pod annotations', async (t) => {
  const spec = injected(injectPod(webPod(), MESH, TARGET))
  const init = spec.initContainers?.[0]
  t.same(init, {
    name: 'remora-init',
    image: 'ghcr.io/remora-mesh/remora:0.1.0',
    args: ['init'],
    env: [{ name: 'REMORA_ANNOTATIONS_FILE', value: '/var/run/remora/podinfo/annotations' }],
    resources: { requests: { cpu: '10m', memory: '32Mi' }, limits: { memory: '128Mi' } },
    securityContext: {
      runAsUser: 0, runAsGroup: 0, runAsNonRoot: false, allowPrivilegeEscalation: false, readOnlyRootFilesystem: false,
      capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' },
    },
    volumeMounts: [{ name: 'remora-podinfo', mountPath: '/var/run/remora/podinfo', readOnly: true }],
  })
})

t.test('remora-proxy is a native sidecar: started before the app once ready, restricted, with its identity and the downward API', async (t) => {
  const spec = injected(injectPod(webPod(), MESH, TARGET))
  t.same(spec.initContainers?.map((c) => c.name), ['remora-init', 'remora-proxy'])
  const proxy = proxyOf(spec)
  t.equal(proxy.restartPolicy, 'Always', 'an init container with restartPolicy Always: a native sidecar (Kubernetes 1.29+)')
  t.same(proxy.args, ['proxy'])
  t.equal(proxy.image, 'ghcr.io/remora-mesh/remora:0.1.0')
  t.same(proxy.ports, [{ name: 'remora-inbound', containerPort: 15006, protocol: 'TCP' }, { name: 'remora-admin', containerPort: 15000, protocol: 'TCP' }])
  t.same(proxy.startupProbe, { httpGet: { path: '/ready', port: 15000 }, periodSeconds: 1, failureThreshold: 120 }, 'the app starts once the proxy is ready')
  t.same(proxy.readinessProbe?.httpGet, { path: '/ready', port: 15000 })
  t.same(proxy.livenessProbe?.httpGet, { path: '/live', port: 15000 })
  t.same(proxy.securityContext, {
    runAsUser: 2102, runAsGroup: 2102, runAsNonRoot: true, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true,
    capabilities: { drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' },
  })
  t.same(proxy.resources, { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi' } })
  t.same(proxy.volumeMounts, [
    { name: 'remora-trust', mountPath: '/var/run/remora/trust', readOnly: true },
    { name: 'remora-token', mountPath: '/var/run/secrets/remora', readOnly: true },
    { name: 'remora-podinfo', mountPath: '/var/run/remora/podinfo', readOnly: true },
  ])
  const names = proxy.env?.map((e) => e.name)
  t.same(names, [
    'REMORA_POD_NAME', 'REMORA_POD_NAMESPACE', 'REMORA_NODE_NAME', 'REMORA_CONTROL_ADDR', 'REMORA_TRUST_ANCHORS',
    'REMORA_TOKEN_FILE', 'REMORA_IDENTITY', 'REMORA_APP_PORTS', 'REMORA_APP_PROBES', 'REMORA_ANNOTATIONS_FILE', 'OTEL_SERVICE_NAME',
  ], 'REMORA_POD_NAMESPACE comes before REMORA_IDENTITY, which uses it; no OTLP endpoint unless configured')
  const env = envOf(proxy)
  // Nothing the proxy would ignore: every REMORA_* variable set is one of its settings.
  const known = new Set(Object.values(ProxySettings).map((s) => s.env))
  t.same(names?.filter((n) => n.startsWith('REMORA_') && !known.has(n)), [], 'every REMORA_* variable on the proxy is a proxy setting')
  t.same(env.REMORA_POD_NAME, { fieldRef: { fieldPath: 'metadata.name' } })
  t.same(env.REMORA_POD_NAMESPACE, { fieldRef: { fieldPath: 'metadata.namespace' } })
  t.same(env.REMORA_NODE_NAME, { fieldRef: { fieldPath: 'spec.nodeName' } })
  t.equal(env.REMORA_CONTROL_ADDR, 'remora-control.remora-system.svc:15012')
  t.equal(env.REMORA_TRUST_ANCHORS, '/var/run/remora/trust/root.pem')
  t.equal(env.REMORA_TOKEN_FILE, '/var/run/secrets/remora/token')
  t.equal(env.REMORA_IDENTITY, 'spiffe://cluster.local/ns/$(REMORA_POD_NAMESPACE)/sa/web')
  t.equal(env.REMORA_APP_PORTS, '8080,9090,9443', "the app containers' TCP ports, once each (UDP left out)")
  t.equal(env.REMORA_ANNOTATIONS_FILE, '/var/run/remora/podinfo/annotations')
  t.equal(env.OTEL_SERVICE_NAME, 'web')
})

t.test('the volumes: trust anchors from the ConfigMap, a projected token for audience remora, the annotations file', async (t) => {
  const spec = injected(injectPod(webPod(), MESH, TARGET))
  t.same(spec.volumes, [
    { name: 'config', configMap: { name: 'web-config' } },
    { name: 'remora-podinfo', downwardAPI: { items: [{ path: 'annotations', fieldRef: { fieldPath: 'metadata.annotations' } }] } },
    { name: 'remora-trust', configMap: { name: 'remora-trust-anchors', items: [{ key: 'root.pem', path: 'root.pem' }] } },
    { name: 'remora-token', projected: { sources: [{ serviceAccountToken: { audience: 'remora', expirationSeconds: 3600, path: 'token' } }] } },
  ], "the pod's own volumes first, unchanged")
})

t.test('mesh-wide settings reach every sidecar; no service account means default', async (t) => {
  const mesh: MeshWide = { ...MESH, proxyImage: 'registry.local/remora:9', controlAddr: 'control.mesh:1234', otlpEndpoint: 'http://jaeger-collector.remora-system.svc:4318', trustDomain: 'prod.example', trustAnchorsConfigMap: 'mesh-root' }
  const pod = webPod()
  delete pod.spec.serviceAccountName
  const spec = injected(injectPod(pod, mesh, { object: 'Job batch/backfill', workload: 'backfill' }))
  const proxy = proxyOf(spec)
  const env = envOf(proxy)
  t.equal(spec.initContainers?.[0].image, 'registry.local/remora:9')
  t.equal(proxy.image, 'registry.local/remora:9')
  t.equal(env.REMORA_CONTROL_ADDR, 'control.mesh:1234')
  t.equal(env.OTEL_EXPORTER_OTLP_ENDPOINT, 'http://jaeger-collector.remora-system.svc:4318')
  t.equal(env.OTEL_SERVICE_NAME, 'backfill')
  t.equal(env.REMORA_IDENTITY, 'spiffe://prod.example/ns/$(REMORA_POD_NAMESPACE)/sa/default')
  t.equal(spec.volumes?.find((v) => v.name === 'remora-trust')?.configMap?.name, 'mesh-root')
})

t.test("the app's httpGet and tcpSocket probes go through the admin port; the sidecar gets what to run", async (t) => {
  const pod = webPod()
  const before = structuredClone(pod)
  const spec = injected(injectPod(pod, MESH, TARGET))
  t.same(pod, before, 'the input is not changed')
  const [web, worker] = spec.containers
  t.same(web.readinessProbe, { httpGet: { path: '/app-health/web/readiness', port: 15000 }, periodSeconds: 5, failureThreshold: 3 }, 'timing fields kept')
  t.same(web.livenessProbe, { httpGet: { path: '/app-health/web/liveness', port: 15000 }, periodSeconds: 10, timeoutSeconds: 2 }, 'tcpSocket → httpGet')
  t.same(web.startupProbe, { exec: { command: ['/bin/check'] }, failureThreshold: 30 }, 'exec left as it is')
  t.same(worker.livenessProbe, { httpGet: { path: '/app-health/worker/liveness', port: 15000 } })
  t.same(worker.readinessProbe, { grpc: { port: 9444 } }, 'grpc left as it is')
  t.same(worker.startupProbe, { httpGet: { host: 'example.com', path: '/', port: 80 } }, 'a probe of another host does not reach the pod: left as it is')
  const raw = envOf(proxyOf(spec)).REMORA_APP_PROBES as string
  t.same(JSON.parse(raw), {
    'web/liveness': { port: 8080, tcp: true },
    'web/readiness': { port: 8080, path: '/healthz', scheme: 'HTTP', headers: [{ name: 'X-Probe', value: 'kubelet' }] },
    'worker/liveness': { port: 9443, path: '/live', scheme: 'HTTPS', headers: [] },
  }, 'the named port resolved to its number, a number in a string read as kubelet reads it, a path given its leading /')
  t.doesNotThrow(() => parseAppProbes(raw), "the sidecar's own parser takes it")
})

t.test("a native sidecar of the user's is probed like an app container; plain init containers are left alone", async (t) => {
  const pod = webPod({}, {
    initContainers: [
      { name: 'migrate', image: 'x', args: ['up'] },
      { name: 'shipper', image: 'y', restartPolicy: 'Always', ports: [{ name: 'ship', containerPort: 2020 }], readinessProbe: { httpGet: { path: '/health', port: 'ship' } } },
    ],
  })
  const spec = injected(injectPod(pod, MESH, TARGET))
  t.same(spec.initContainers?.map((c) => c.name), ['remora-init', 'remora-proxy', 'migrate', 'shipper'], "ours first: the user's init containers already run through the sidecar")
  t.same(spec.initContainers?.[2], { name: 'migrate', image: 'x', args: ['up'] })
  t.same(spec.initContainers?.[3].readinessProbe, { httpGet: { path: '/app-health/shipper/readiness', port: 15000 } })
  const env = envOf(proxyOf(spec))
  t.equal(env.REMORA_APP_PORTS, '8080,9090,9443,2020')
  t.same(JSON.parse(env.REMORA_APP_PROBES as string)['shipper/readiness'], { port: 2020, path: '/health', scheme: 'HTTP', headers: [] })
})

t.test('a pod with no ports and no probes gets neither REMORA_APP_PORTS nor REMORA_APP_PROBES', async (t) => {
  const spec = injected(injectPod({ spec: { containers: [{ name: 'report', image: 'r' }], restartPolicy: 'OnFailure' } }, MESH, TARGET))
  const env = envOf(proxyOf(spec))
  t.notOk('REMORA_APP_PORTS' in env)
  t.notOk('REMORA_APP_PROBES' in env)
  t.equal(spec.restartPolicy, 'OnFailure')
  t.notOk('terminationGracePeriodSeconds' in spec, "the user's grace period is left alone")
})

t.test('an unknown named probe port names the object, the container and the probe', async (t) => {
  const pod = webPod()
  const web = (pod.spec.containers as Array<Record<string, unknown>>)[0]
  web.readinessProbe = { httpGet: { path: '/healthz', port: 'htpp' } }
  const err = thrown(() => injectPod(pod, MESH, TARGET))
  t.equal(err.code, 'REMORA_INJECT_OBJECT')
  t.match(err.message, /^Deployment shop\/web: container web, readinessProbe: port "htpp" is not a named port of container web \(its named ports: http=8080, metrics=9090, dns=5353\)$/)
})

t.test('per-pod annotations: image and resources override the mesh-wide settings; proxy-uid moves the proxy', async (t) => {
  const spec = injected(injectPod(webPod({
    'remora.dev/proxy-image': 'registry.local/remora:debug',
    'remora.dev/proxy-cpu-request': '200m',
    'remora.dev/proxy-memory-request': '128Mi',
    'remora.dev/proxy-memory-limit': '1Gi',
    'remora.dev/proxy-uid': '3000',
    'remora.dev/log-level': 'debug',
    'remora.dev/skip-outbound-ports': '5432',
    'remora.dev/inject': 'enabled',
    'prometheus.io/scrape': 'true',
  }), MESH, TARGET))
  const proxy = proxyOf(spec)
  t.equal(proxy.image, 'registry.local/remora:debug')
  t.equal(spec.initContainers?.[0].image, 'registry.local/remora:debug', 'remora-init runs the same image')
  t.same(proxy.resources, { requests: { cpu: '200m', memory: '128Mi' }, limits: { memory: '1Gi' } })
  t.same([proxy.securityContext?.runAsUser, proxy.securityContext?.runAsGroup], [3000, 3000], 'remora init exempts that UID (it reads the same annotation)')
  t.notOk(envOf(proxy).REMORA_LOG_LEVEL, 'run-time options stay annotations: the sidecar reads them from the file')
})

t.test('remora.dev/app-ports replaces the ports found; the older authorization annotations still work', async (t) => {
  const spec = injected(injectPod(webPod({ 'remora.dev/app-ports': '8080', 'remora.dev/default-policy': 'deny', 'remora.dev/allow': '8080=ns:shop' }), MESH, TARGET))
  const env = envOf(proxyOf(spec))
  t.notOk('REMORA_APP_PORTS' in env, 'the annotation decides (a variable would outvote it)')
  t.equal(env.REMORA_AUTHZ_DEFAULT, 'deny')
  t.equal(env.REMORA_AUTHZ_ALLOW, '8080=ns:shop')
  const both = thrown(() => injectPod(webPod({ 'remora.dev/default-policy': 'deny', 'remora.dev/authz-default': 'deny' }), MESH, TARGET))
  t.match(both.message, /annotations remora.dev\/default-policy and remora.dev\/authz-default in Deployment shop\/web say the same thing/)
})

t.test('bad annotations are refused naming the object and the annotation, all at once', async (t) => {
  const err = thrown(() => injectPod(webPod({
    'remora.dev/log-level': 'loud',
    'remora.dev/proxy-memory-limit': '256MB',
    'remora.dev/skip-inbound-ports': '99999',
    'remora.dev/timeout': '2s',
    'remora.dev/control-addr': 'elsewhere:15012',
    'remora.dev/access-log': true,
    'remora.dev/allow': '8080=nobody',
  }), MESH, TARGET))
  t.equal(err.code, 'REMORA_INJECT_ANNOTATION')
  const lines = err.message.split('\n')
  t.equal(lines.length, 7, 'one line per problem')
  t.match(lines[0], /^annotation remora.dev\/log-level in Deployment shop\/web: expected one of fatal, error, warn, info, debug, trace, silent, got "loud"$/)
  t.match(lines[1], /^annotation remora.dev\/proxy-memory-limit in Deployment shop\/web: expected a Kubernetes quantity .* got "256MB"$/)
  t.match(lines[2], /^annotation remora.dev\/skip-inbound-ports in Deployment shop\/web: "99999" is not a port number/)
  t.match(lines[3], /^annotation remora.dev\/timeout in Deployment shop\/web: not a remora annotation; known: remora.dev\/access-log, /)
  t.match(lines[4], /^annotation remora.dev\/control-addr in Deployment shop\/web: set by the injector \(mesh-wide: remora inject --control-addr\); remove it$/)
  t.match(lines[5], /^annotation remora.dev\/access-log in Deployment shop\/web: annotation values are strings, got true; quote it in YAML$/)
  t.match(lines[6], /^annotation remora.dev\/allow in Deployment shop\/web: /)
  for (const k of ['remora.dev/inject', 'remora.dev/proxy-image', 'remora.dev/proxy-cpu-request', 'remora.dev/proxy-memory-request', 'remora.dev/proxy-memory-limit', 'remora.dev/skip-inbound-ports', 'remora.dev/opaque-ports', 'remora.dev/log-level', 'remora.dev/outbound-policy', 'remora.dev/default-policy', 'remora.dev/allow']) {
    t.ok(KNOWN_POD_ANNOTATIONS.includes(k), `${k} is known`)
  }
  for (const k of ['remora.dev/annotations-file', 'remora.dev/app-probes', 'remora.dev/control-addr', 'remora.dev/admin-port', 'remora.dev/identity']) {
    t.notOk(KNOWN_POD_ANNOTATIONS.includes(k), `${k} is not a pod annotation`)
  }
  const over = thrown(() => injectPod(webPod({ 'remora.dev/proxy-memory-request': '512Mi' }), MESH, TARGET))
  t.match(over.message, /^annotation remora.dev\/proxy-memory-request in Deployment shop\/web: the sidecar's memory request 512Mi is above its limit 256Mi; raise remora.dev\/proxy-memory-limit too$/)
  const inject = thrown(() => injectPod(webPod({ 'remora.dev/inject': 'true' }), MESH, TARGET))
  t.match(inject.message, /^annotation remora.dev\/inject in Deployment shop\/web: expected enabled or disabled, got "true"$/)
})

t.test('pods left alone say why: already injected, disabled, host network, Windows', async (t) => {
  const once = injected(injectPod(webPod(), MESH, TARGET))
  const again = injectPod({ spec: once }, MESH, TARGET)
  t.same([again.injected, !again.injected && again.skipped], [false, 'already-injected'])
  t.equal(again.spec, once, 'the very same spec back')
  const byHand = webPod()
  ;(byHand.spec.containers as unknown[]).push({ name: 'remora-proxy', image: 'remora', args: ['proxy'] })
  const hand = injectPod(byHand, MESH, TARGET)
  t.equal(!hand.injected && hand.skipped, 'already-injected', 'a sidecar added by hand counts too')

  const disabled = injectPod(webPod({ 'remora.dev/inject': 'disabled', 'remora.dev/log-level': 'loud' }), MESH, TARGET)
  t.same(!disabled.injected && [disabled.skipped, disabled.why], ['disabled', 'Deployment shop/web: remora.dev/inject is disabled on the pod; left as it is'], 'the rest is not checked: the pod opted out')
  const outer = [{ where: "the Deployment's own metadata", annotations: { 'remora.dev/inject': 'disabled' }, misplaced: 'x' }]
  const byOwner = injectPod(webPod(), MESH, { ...TARGET, outer })
  t.same(!byOwner.injected && byOwner.why, "Deployment shop/web: remora.dev/inject is disabled on the Deployment's own metadata; left as it is")
  t.ok(injectPod(webPod({ 'remora.dev/inject': 'enabled' }), MESH, { ...TARGET, outer }).injected, "the pod's own annotation wins")
  const misplaced = thrown(() => injectPod(webPod(), MESH, { ...TARGET, outer: [{ where: '--namespace-annotations', annotations: { 'remora.dev/log-level': 'debug' }, misplaced: 'only remora.dev/inject is read from the namespace' }] }))
  t.match(misplaced.message, /^annotation remora.dev\/log-level in Deployment shop\/web \(--namespace-annotations\): only remora.dev\/inject is read from the namespace$/)

  const host = injectPod(webPod({ 'remora.dev/log-level': 'loud' }, { hostNetwork: true }), MESH, TARGET)
  t.same(!host.injected && host.skipped, 'host-network', 'never injected, so its annotations are not checked either')
  t.match(!host.injected && host.why, /hostNetwork: true.*not injected/)
  const windows = injectPod(webPod({}, { os: { name: 'windows' } }), MESH, TARGET)
  t.same(!windows.injected && windows.skipped, 'windows')
})

t.test('what the injector would collide with is refused, not overwritten', async (t) => {
  const port = thrown(() => injectPod(webPod({}, { containers: [{ name: 'app', image: 'a', ports: [{ containerPort: 15001 }] }] }), MESH, TARGET))
  t.match(port.message, /^Deployment shop\/web: container app: containerPort 15001 is the sidecar's outbound port; the app must listen elsewhere$/)
  const volume = thrown(() => injectPod(webPod({}, { volumes: [{ name: 'remora-token', emptyDir: {} }] }), MESH, TARGET))
  t.match(volume.message, /a volume is already named remora-token/)
  const name = thrown(() => injectPod(webPod({}, { initContainers: [{ name: 'remora-init', image: 'x' }] }), MESH, TARGET))
  t.match(name.message, /a container is already named remora-init/)
  const none = thrown(() => injectPod({ spec: { volumes: [] } }, MESH, TARGET))
  t.match(none.message, /^Deployment shop\/web: the pod has no containers$/)
})

t.test('REMORA_SIDECAR_MODE=container (clusters before 1.29): the proxy is the first container and holds the app until it is ready', async (t) => {
  const mesh: MeshWide = { ...MESH, sidecarMode: 'container' }
  const spec = injected(injectPod(webPod(), mesh, TARGET))
  t.same(spec.initContainers?.map((c) => c.name), ['remora-init'], 'only remora init runs before the app')
  t.same(spec.containers.map((c) => c.name), ['remora-proxy', 'web', 'worker'], 'the proxy first: kubelet starts containers in order')
  const proxy = spec.containers[0]
  t.equal(proxy.restartPolicy, undefined, 'a plain container (restartPolicy on a container needs 1.29)')
  const hook = proxy.lifecycle?.postStart?.exec?.command ?? []
  t.equal(hook[0], 'node')
  t.match(hook[2], /127\.0\.0\.1:15000\/ready/, 'postStart waits for /ready, so the next container starts once the proxy is ready')
  t.same(spec.containers[1].readinessProbe?.httpGet, { path: '/app-health/web/readiness', port: 15000 }, 'probes are rewritten as in native mode')
  t.same(validateStrict({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web', namespace: 'demo' }, spec }), [], 'a valid pod')
  const again = injectPod({ metadata: {}, spec: spec as unknown as Record<string, unknown> }, mesh, TARGET)
  t.equal(again.injected, false, 'injecting it again changes nothing')
})
