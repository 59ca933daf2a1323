// Kubernetes objects → remora Services: ports, readiness, dual-stack, cluster IPs, protocol (opaque
// too), policy, annotations without effect yet, and malformed input.
import t from 'tap'
import type { V1EndpointSlice, V1Pod, V1Service } from '@kubernetes/client-node'
import { podAnnotationsRead, podAnnotationWarnings, servicesFromKube, type PodLookup } from '../../src/control/kube-objects.ts'
import { DEFAULT_SERVICE_POLICY } from '../../src/resilience/policy.ts'
import { endpointSlice, pod, service, type EndpointSpec } from '../harness/kube-api.ts'

const TD = 'cluster.local'
const svc = (...a: Parameters<typeof service>): V1Service => service(...a) as V1Service
const slice = (...a: Parameters<typeof endpointSlice>): V1EndpointSlice => endpointSlice(...a) as unknown as V1EndpointSlice
const ep = (ip: string, podName?: string, conditions?: EndpointSpec['conditions']): EndpointSpec =>
  ({ addresses: [ip], conditions: conditions ?? { ready: true, serving: true, terminating: false }, ...(podName && { targetRef: { kind: 'Pod', name: podName, namespace: 'demo' } }) })
function podsOf (...pods: Array<ReturnType<typeof pod>>): PodLookup {
  const m = new Map(pods.map((p) => [`${p.metadata.namespace}/${p.metadata.name}`, p as V1Pod]))
  return (ns, name) => m.get(`${ns}/${name}`)
}
const webPods = podsOf(pod('demo', 'web-1', { serviceAccountName: 'web' }), pod('demo', 'web-2', { serviceAccountName: 'web' }), pod('demo', 'web-3', { serviceAccountName: 'web' }))
const convert = (s: V1Service, slices: V1EndpointSlice[], pods = webPods) => servicesFromKube(s, slices, pods, { trustDomain: TD })
const keys = (r: ReturnType<typeof convert>, i = 0): string[] => r.services[i].endpoints.map((e) => e.key)

t.test('one Service port: endpoints on the sidecar inbound port, target port and identity from slice and pod', async (t) => {
  const r = convert(svc('demo', 'web', { ports: [{ name: 'http', port: 80, targetPort: 'web' }], clusterIP: '10.96.0.10' }), [
    slice('demo', 'web-abc12', 'web', { ports: [{ name: 'http', port: 8080 }], endpoints: [ep('10.0.0.2', 'web-2'), ep('10.0.0.1', 'web-1')] }),
  ])
  t.same(r.problems, [])
  t.same(r.services, [{
    name: 'web',
    namespace: 'demo',
    port: 80,
    protocol: 'auto',
    key: 'web.demo:80',
    authorities: ['web:80', 'web.demo:80', 'web.demo.svc:80', 'web.demo.svc.cluster.local:80', '10.96.0.10:80'],
    endpoints: [
      { address: { host: '10.0.0.1', port: 15006 }, targetPort: 8080, weight: 1, identity: 'spiffe://cluster.local/ns/demo/sa/web', key: '10.0.0.1:15006/8080' },
      { address: { host: '10.0.0.2', port: 15006 }, targetPort: 8080, weight: 1, identity: 'spiffe://cluster.local/ns/demo/sa/web', key: '10.0.0.2:15006/8080' },
    ],
    policy: DEFAULT_SERVICE_POLICY,
  }])
  t.ok(Object.isFrozen(r.services[0].endpoints[0].address), 'frozen all the way down')
  const other = servicesFromKube(svc('demo', 'web'), [slice('demo', 'web-x', 'web', { endpoints: [ep('10.0.0.1', 'web-1')] })], webPods, { trustDomain: 'example.org', inboundPort: 4143 })
  t.same(other.services[0].endpoints[0], { address: { host: '10.0.0.1', port: 4143 }, targetPort: 8080, weight: 1, identity: 'spiffe://example.org/ns/demo/sa/web', key: '10.0.0.1:4143/8080' })
})

t.test('unnamed single port matches a slice port named "" or with no name', async (t) => {
  const s = svc('demo', 'web', { ports: [{ port: 80, targetPort: 8080 }] })
  for (const port of [{ name: '', port: 8080 }, { port: 8080 }]) {
    const r = convert(s, [slice('demo', 'web-a', 'web', { ports: [port], endpoints: [ep('10.0.0.1', 'web-1')] })])
    t.same(keys(r), ['10.0.0.1:15006/8080'], JSON.stringify(port))
  }
})

t.test('several ports: one Service each; a slice without the port name adds nothing to that port', async (t) => {
  const r = convert(svc('demo', 'web', { ports: [{ name: 'http', port: 80 }, { name: 'grpc', port: 9090, appProtocol: 'grpc' }, { name: 'dns', port: 53, protocol: 'UDP' }] }), [
    slice('demo', 'web-a', 'web', { ports: [{ name: 'http', port: 8080 }, { name: 'grpc', port: 9091 }], endpoints: [ep('10.0.0.1', 'web-1')] }),
    slice('demo', 'web-b', 'web', { ports: [{ name: 'http', port: 8081 }], endpoints: [ep('10.0.0.2', 'web-2')] }),
    slice('demo', 'other-a', 'other', { ports: [{ name: 'http', port: 8080 }], endpoints: [ep('10.0.0.9', 'web-3')] }),
  ])
  t.same(r.problems, [])
  t.same(r.services.map((s) => [s.key, s.protocol]), [['web.demo:80', 'auto'], ['web.demo:9090', 'grpc']], 'UDP port not meshed')
  t.same(keys(r, 0), ['10.0.0.1:15006/8080', '10.0.0.2:15006/8081'], 'each slice carries its own resolved port')
  t.same(keys(r, 1), ['10.0.0.1:15006/9091'])
})

t.test('readiness: nil ready is ready; not-ready left out; serving+terminating only when nothing is ready', async (t) => {
  const s = svc('demo', 'web')
  const draining = { ready: false, serving: true, terminating: true }
  const gone = { ready: false, serving: false, terminating: true }
  let r = convert(s, [slice('demo', 'web-a', 'web', { endpoints: [ep('10.0.0.1', 'web-1', {}), ep('10.0.0.2', 'web-2', { ready: false }), ep('10.0.0.3', 'web-3', draining)] })])
  t.same(keys(r), ['10.0.0.1:15006/8080'], 'ready wins over draining')
  r = convert(s, [slice('demo', 'web-a', 'web', { endpoints: [ep('10.0.0.2', 'web-2', { ready: false }), ep('10.0.0.3', 'web-3', draining), ep('10.0.0.1', 'web-1', gone)] })])
  t.same(keys(r), ['10.0.0.3:15006/8080'], 'no ready endpoint: terminating ones still serving drain')
  r = convert(s, [slice('demo', 'web-a', 'web', { endpoints: [ep('10.0.0.2', 'web-2', { ready: false, serving: false }), ep('10.0.0.1', 'web-1', gone)] })])
  t.same(r.services[0].endpoints, [], 'not ready, not serving: never')
  t.same(r.problems, [])
})

t.test('dual-stack: primary family first, the other only for pods without a primary address', async (t) => {
  const v4 = slice('demo', 'web-v4', 'web', { addressType: 'IPv4', endpoints: [ep('10.0.0.1', 'web-1'), ep('10.0.0.2', 'web-2')] })
  const v6 = slice('demo', 'web-v6', 'web', { addressType: 'IPv6', endpoints: [ep('FD00::1', 'web-1'), ep('fd00::2', 'web-2'), ep('fd00::3', 'web-3')] })
  const fqdn = slice('demo', 'web-dns', 'web', { addressType: 'FQDN', endpoints: [{ addresses: ['web.example.com'] }] })
  let r = convert(svc('demo', 'web', { ipFamilies: ['IPv4', 'IPv6'] }), [v6, fqdn, v4])
  t.same(keys(r), ['10.0.0.1:15006/8080', '10.0.0.2:15006/8080', 'fd00::3:15006/8080'])
  t.same(r.services[0].endpoints[2].address, { host: 'fd00::3', port: 15006 }, 'IPv6 host bare, as parseHostPort stores it')
  r = convert(svc('demo', 'web', { ipFamilies: ['IPv6', 'IPv4'] }), [v4, v6])
  t.same(keys(r), ['fd00::1:15006/8080', 'fd00::2:15006/8080', 'fd00::3:15006/8080'])
  r = convert(svc('demo', 'web'), [v4, v6])
  t.equal(r.services[0].endpoints.length, 3, 'no ipFamilies: IPv4 primary')
  t.same(r.problems, [])
})

t.test('an endpoint in several slices is listed once; slice order does not matter', async (t) => {
  const a = slice('demo', 'web-a', 'web', { endpoints: [ep('10.0.0.1', 'web-1'), ep('10.0.0.2', 'web-2')] })
  const b = slice('demo', 'web-b', 'web', { endpoints: [ep('10.0.0.2', 'web-2'), ep('10.0.0.3', 'web-3'), { addresses: ['10.0.0.9'] }, { addresses: ['10.0.0.9'] }] })
  const r = convert(svc('demo', 'web'), [a, b])
  t.same(keys(r), ['10.0.0.1:15006/8080', '10.0.0.2:15006/8080', '10.0.0.3:15006/8080', '10.0.0.9:15006/8080'])
  t.same(convert(svc('demo', 'web'), [b, a]).services, r.services)
})

t.test('identity: pod service account; unknown pod waits; no targetRef gets the default account', async (t) => {
  const pods = podsOf(pod('demo', 'web-1', { serviceAccountName: 'web' }), { ...pod('demo', 'web-2'), spec: {} } as ReturnType<typeof pod>)
  const r = convert(svc('demo', 'web'), [slice('demo', 'web-a', 'web', { endpoints: [ep('10.0.0.1', 'web-1'), ep('10.0.0.2', 'web-2'), ep('10.0.0.3', 'web-new'), { addresses: ['10.0.0.4'] }] })], pods)
  t.same(r.services[0].endpoints.map((e) => [e.address.host, e.identity]), [
    ['10.0.0.1', 'spiffe://cluster.local/ns/demo/sa/web'],
    ['10.0.0.2', 'spiffe://cluster.local/ns/demo/sa/default'],
    ['10.0.0.4', 'spiffe://cluster.local/ns/demo/sa/default'],
  ])
  t.same(r.waitingFor, ['demo/web-new'])
  t.same(r.problems, [])
})

t.test('protocol: appProtocol, then the remora.dev/protocol annotation wins; unknown values reported', async (t) => {
  const ports = [
    { name: 'a', port: 1, appProtocol: 'http' }, { name: 'b', port: 2, appProtocol: 'kubernetes.io/h2c' },
    { name: 'c', port: 3, appProtocol: 'grpc' }, { name: 'd', port: 4, appProtocol: 'http2' },
    { name: 'e', port: 5 }, { name: 'f', port: 6, appProtocol: 'quic' },
  ]
  let r = convert(svc('demo', 'web', { ports }), [])
  t.same(r.services.map((s) => s.protocol), ['http1', 'http2', 'grpc', 'http2', 'auto', 'auto'])
  t.match(r.problems, [/^Service demo\/web: spec\.ports\[5\]\.appProtocol: expected one of .*\(treated as auto\), got "quic"$/])
  r = convert(svc('demo', 'web', { ports, annotations: { 'remora.dev/protocol': 'grpc' } }), [])
  t.same(r.services.map((s) => s.protocol), ['grpc', 'grpc', 'grpc', 'grpc', 'grpc', 'grpc'])
  t.same(r.problems, [])
  r = convert(svc('demo', 'web', { ports: [ports[0]], annotations: { 'remora.dev/protocol': 'h3' } }), [])
  t.equal(r.services[0].protocol, 'http1', 'bad annotation: appProtocol applies')
  t.same(r.problems, ['Service demo/web: annotation remora.dev/protocol: expected one of auto, http1, http2, grpc, opaque, got "h3"'])
})

t.test('opaque: appProtocol of a non-HTTP protocol (any case), the remora.dev/protocol annotation, no problem reported', async (t) => {
  const names = ['tcp', 'tls', 'https', 'mysql', 'postgresql', 'postgres', 'redis', 'mongo', 'mongodb', 'kafka', 'amqp', 'nats', 'smtp', 'TCP', 'MySQL']
  let r = convert(svc('demo', 'db', { ports: names.map((appProtocol, i) => ({ name: `p${i}`, port: 5000 + i, appProtocol })) }), [])
  t.same(r.problems, [])
  t.same(r.services.map((s) => [s.port, s.protocol]), names.map((_, i) => [5000 + i, 'opaque']))
  r = convert(svc('demo', 'db', { ports: [{ name: 'pg', port: 5432 }, { name: 'http', port: 80, appProtocol: 'http' }], annotations: { 'remora.dev/protocol': 'opaque' } }), [])
  t.same(r.problems, [])
  t.same(r.services.map((s) => s.protocol), ['opaque', 'opaque'], 'the annotation wins over appProtocol, as for the other protocols')
})

t.test('remora.dev/opaque-ports: those Service ports (single or ranges) are opaque, the others keep their protocol', async (t) => {
  const ports = [
    { name: 'http', port: 80 }, { name: 'pg', port: 5432 }, { name: 'lo', port: 9000 }, { name: 'mid', port: 9005, appProtocol: 'grpc' },
    { name: 'hi', port: 9010 }, { name: 'out', port: 9011 },
  ]
  let r = convert(svc('demo', 'db', { ports, annotations: { 'remora.dev/opaque-ports': '5432, 9000-9010' } }), [])
  t.same(r.problems, [])
  t.same(r.warnings, [], 'an annotation with an effect: no "has no effect yet" warning')
  t.same(r.services.map((s) => [s.port, s.protocol]), [[80, 'auto'], [5432, 'opaque'], [9000, 'opaque'], [9005, 'opaque'], [9010, 'opaque'], [9011, 'auto']])
  r = convert(svc('demo', 'db', { ports, annotations: { 'remora.dev/opaque-ports': '5432', 'remora.dev/protocol': 'grpc' } }), [])
  t.same(r.services.map((s) => s.protocol), ['grpc', 'opaque', 'grpc', 'grpc', 'grpc', 'grpc'], 'the port list wins over remora.dev/protocol for its ports')
  r = convert(svc('demo', 'db', { ports, annotations: { 'remora.dev/opaque-ports': '3306' } }), [])
  t.same(r.services.map((s) => s.protocol), ['auto', 'auto', 'auto', 'grpc', 'auto', 'auto'], 'a port the Service does not have changes nothing')
})

t.test('remora.dev/opaque-ports: a bad list is reported, naming the Service and the value, and ignored whole', async (t) => {
  const ports = [{ name: 'http', port: 80 }, { name: 'pg', port: 5432 }]
  for (const bad of ['5432,postgres', '5432,0', '9010-9000', '70000', '5432;80', '-5']) {
    const r = convert(svc('demo', 'db', { ports, annotations: { 'remora.dev/opaque-ports': bad } }), [])
    t.same(r.problems, [`Service demo/db: annotation remora.dev/opaque-ports: expected comma-separated ports or ranges (3306,5432 or 9000-9010), got ${JSON.stringify(bad)}`], bad)
    t.same(r.services.map((s) => s.protocol), ['auto', 'auto'], `${bad}: no port made opaque, the Service still converted`)
  }
})

t.test('cluster IPs: each Service port answers to its cluster IPs with the port, after its names', async (t) => {
  const dual = svc('demo', 'web', { ports: [{ name: 'http', port: 80 }, { name: 'grpc', port: 9090 }], ipFamilies: ['IPv4', 'IPv6'] })
  const r = convert({ ...dual, spec: { ...dual.spec, clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10', 'fd00::a'] } } as V1Service, [])
  t.same(r.problems, [])
  t.same(r.services.map((s) => s.authorities), [
    ['web:80', 'web.demo:80', 'web.demo.svc:80', 'web.demo.svc.cluster.local:80', '10.96.0.10:80', '[fd00::a]:80'],
    ['web:9090', 'web.demo:9090', 'web.demo.svc:9090', 'web.demo.svc.cluster.local:9090', '10.96.0.10:9090', '[fd00::a]:9090'],
  ], 'IPv6 in brackets, as in a Host header')
  const v6 = svc('demo', 'web', { clusterIP: 'fd00:10:96::1', ipFamilies: ['IPv6'] })
  t.same(convert(v6, []).services[0].authorities.slice(4), ['[fd00:10:96::1]:80'])
  const old = svc('demo', 'web')
  const onlyClusterIP = { ...old, spec: { ...old.spec, clusterIP: '10.96.0.11', clusterIPs: undefined } } as V1Service
  t.same(convert(onlyClusterIP, []).services[0].authorities.slice(4), ['10.96.0.11:80'], 'spec.clusterIP alone (no clusterIPs) is used')
  const none = { ...old, spec: { ...old.spec, clusterIP: undefined, clusterIPs: undefined } } as V1Service
  t.same(convert(none, []).services[0].authorities, ['web:80', 'web.demo:80', 'web.demo.svc:80', 'web.demo.svc.cluster.local:80'], 'no cluster IP yet: names only')
})

t.test('cluster IPs: a malformed one is reported and left out; the good ones and the Service stay', async (t) => {
  const s = svc('demo', 'web')
  const r = convert({ ...s, spec: { ...s.spec, clusterIPs: ['10.96.0.300', '10.96.0.10', 7, 'web.example.com'] } } as unknown as V1Service, [])
  t.same(r.problems, [
    'Service demo/web: spec.clusterIPs: expected IP addresses (or None), got "10.96.0.300"',
    'Service demo/web: spec.clusterIPs: expected IP addresses (or None), got 7',
    'Service demo/web: spec.clusterIPs: expected IP addresses (or None), got "web.example.com"',
  ])
  t.same(r.services[0].authorities.slice(4), ['10.96.0.10:80'])
})

t.test('policy annotations: good ones apply, bad ones are reported and the default stays', async (t) => {
  const r = convert(svc('demo', 'web', { annotations: { 'remora.dev/timeout': '2s', 'remora.dev/retry-attempts': '99', 'remora.dev/balancer': 'round-robin' } }), [])
  t.equal(r.services[0].policy.requestTimeoutMs, 2000)
  t.equal(r.services[0].policy.balancer, 'round-robin')
  t.equal(r.services[0].policy.retry.attempts, DEFAULT_SERVICE_POLICY.retry.attempts)
  t.match(r.problems, [/^Service demo\/web: annotation remora\.dev\/retry-attempts: expected a whole number from 1 to 10, got "99"/])
})

t.test('annotations with no effect yet: warnings naming Service or Pod and the annotation, not problems', async (t) => {
  const r = convert(svc('demo', 'web', { annotations: { 'remora.dev/proxy-image': 'remora:next', 'remora.dev/opaque-ports': '5432', 'remora.dev/protocol': 'grpc', 'remora.dev/timeout': '2s' } }), [])
  t.same(r.problems, [])
  t.equal(r.services[0].policy.requestTimeoutMs, 2000)
  t.same(r.warnings, [{ annotation: 'remora.dev/proxy-image', message: 'Service demo/web: annotation remora.dev/proxy-image has no effect on the control plane (it is read once, when a pod is created: by the admission webhook (remora control, remora injector) or by remora inject; put it on the pod template)' }],
    'opaque-ports has an effect now: no warning')
  const p = { ...pod('demo', 'web-1'), metadata: { name: 'web-1', namespace: 'demo', annotations: { 'remora.dev/inject': 'enabled', 'remora.dev/skip-inbound-ports': '9090', 'remora.dev/skip-outbound-ports': '3306', 'remora.dev/opaque-ports': '5432', 'remora.dev/allow': '8080=ns:demo', 'example.com/x': 'y' } } }
  t.same(podAnnotationsRead(p), { 'remora.dev/inject': 'enabled' }, 'a pod keeps only what the control plane reads (the skip and opaque ports are for remora init and the sidecar)')
  t.same(podAnnotationWarnings(p), [{ annotation: 'remora.dev/inject', message: 'Pod demo/web-1: annotation remora.dev/inject has no effect on the control plane (it is read once, when a pod is created: by the admission webhook (remora control, remora injector) or by remora inject; put it on the pod template, or label the namespace)' }])
  const interception = { ...pod('demo', 'web-3'), metadata: { name: 'web-3', namespace: 'demo', annotations: { 'remora.dev/skip-inbound-ports': '9090', 'remora.dev/skip-outbound-ports': '3306' } } }
  t.equal(podAnnotationsRead(interception), undefined)
  t.same(podAnnotationWarnings(interception), [], 'skip-inbound-ports and skip-outbound-ports have an effect now: no warning')
  t.same(podAnnotationWarnings(pod('demo', 'web-2')), [])
  t.same(podAnnotationWarnings({ metadata: { name: 'x', annotations: 'nope' } }), [], 'malformed annotations: nothing, no throw')
})

t.test('ExternalName is skipped quietly; headless is fine', async (t) => {
  const ext = { ...svc('demo', 'ext'), spec: { type: 'ExternalName', externalName: 'example.com' } } as V1Service
  t.same(convert(ext, []), { services: [], problems: [], warnings: [], waitingFor: [] })
  const headless = convert(svc('demo', 'web', { clusterIP: 'None' }), [slice('demo', 'web-a', 'web', { endpoints: [ep('10.0.0.1', 'web-1')] })])
  t.same(keys(headless), ['10.0.0.1:15006/8080'])
  t.same(headless.problems, [])
  t.same(headless.services[0].authorities, ['web:80', 'web.demo:80', 'web.demo.svc:80', 'web.demo.svc.cluster.local:80'], 'headless: no cluster IP among the authorities')
})

t.test('malformed slices: each problem names object and field; only the bad part is left out', async (t) => {
  const good = slice('demo', 'web-good', 'web', { endpoints: [ep('10.0.0.1', 'web-1')] })
  const raw = (name: string, body: object): V1EndpointSlice => ({ ...slice('demo', name, 'web'), ...body }) as V1EndpointSlice
  const r = convert(svc('demo', 'web'), [
    good,
    raw('web-abc12', { endpoints: { oops: true } }),
    raw('web-def34', {
      endpoints: [ep('10.0.0.2', 'web-2'), null, { conditions: { ready: true } }, { addresses: ['not-an-ip'] }, { addresses: ['10.0.0.5'], conditions: { ready: 'yes' } }, { addresses: ['10.0.0.6'], targetRef: { kind: 'Pod' } }],
    }),
    raw('web-ports', { ports: [{ name: 'http' }], endpoints: [ep('10.0.0.7', 'web-3')] }),
    raw('web-ports2', { ports: 'http', endpoints: [ep('10.0.0.8', 'web-3')] }),
    raw('web-type', { addressType: 'IPv5', endpoints: [ep('10.0.0.9', 'web-3')] }),
    raw('web-v6', { addressType: 'IPv6', endpoints: [ep('10.0.0.10', 'web-3')] }),
  ])
  t.same(keys(r), ['10.0.0.1:15006/8080', '10.0.0.2:15006/8080'])
  t.same(r.problems, [
    'EndpointSlice demo/web-abc12: endpoints: expected a list, got {"oops":true}',
    'EndpointSlice demo/web-def34: endpoints[1]: expected an object, got null',
    'EndpointSlice demo/web-def34: endpoints[2].addresses: expected a list starting with an IPv4 address, got nothing',
    'EndpointSlice demo/web-def34: endpoints[3].addresses: expected a list starting with an IPv4 address, got ["not-an-ip"]',
    'EndpointSlice demo/web-def34: endpoints[4].conditions.ready: expected true, false or nothing, got "yes"',
    'EndpointSlice demo/web-def34: endpoints[5].targetRef.name: expected the name of a Pod, got nothing',
    'EndpointSlice demo/web-ports: ports[0].port: expected a port number 1-65535, got nothing',
    'EndpointSlice demo/web-ports2: ports: expected a list, got "http"',
    'EndpointSlice demo/web-type: addressType: expected IPv4, IPv6 or FQDN, got "IPv5"',
    'EndpointSlice demo/web-v6: endpoints[0].addresses: expected a list starting with an IPv6 address, got ["10.0.0.10"]',
  ])
})

t.test('malformed Services and Pods never throw and keep what is good', async (t) => {
  const s = svc('demo', 'web', { ports: [{ name: 'http', port: 80 }, { name: 'bad', port: 0 }, { name: 'dup', port: 80 }], annotations: { 'remora.dev/timeout': 5 as unknown as string } })
  const pods = podsOf(pod('demo', 'web-1', { serviceAccountName: 'web' }), { ...pod('demo', 'web-2'), spec: { serviceAccountName: 42 } } as unknown as ReturnType<typeof pod>)
  const r = convert(s, [slice('demo', 'web-a', 'web', { endpoints: [ep('10.0.0.1', 'web-1'), ep('10.0.0.2', 'web-2')] })], pods)
  t.same(r.services.map((x) => x.port), [80])
  t.same(keys(r), ['10.0.0.1:15006/8080'])
  t.same(r.problems, [
    'Service demo/web: metadata.annotations["remora.dev/timeout"]: expected a string, got 5',
    'Pod demo/web-2: spec.serviceAccountName: expected a service account name, got 42',
    'Service demo/web: spec.ports[1].port: expected a port number 1-65535, got 0',
    'Service demo/web: spec.ports[2].port: expected a port not already used by spec.ports[0], got 80',
  ])
  const cases: Array<[unknown, RegExp]> = [
    [null, /^Service \(unnamed\): metadata: expected a name and a namespace/],
    [{ metadata: { name: 'x' } }, /^Service \/x: metadata: expected a name and a namespace, got \{"name":"x"\}/],
    [{ metadata: { name: 'x', namespace: 'demo' } }, /^Service demo\/x: spec: expected an object, got nothing$/],
    [{ metadata: { name: 'x', namespace: 'demo' }, spec: { ports: 80 } }, /^Service demo\/x: spec\.ports: expected a list, got 80$/],
    [{ metadata: { name: 'x', namespace: 'demo', annotations: 'a=b' }, spec: { ports: [] } }, /^Service demo\/x: metadata\.annotations: expected a map of strings/],
    [{ metadata: { name: 'x', namespace: 'demo' }, spec: { ports: [], ipFamilies: ['IPv5'] } }, /^Service demo\/x: spec\.ipFamilies\[0\]: expected IPv4 or IPv6, got "IPv5"$/],
  ]
  for (const [obj, problem] of cases) {
    const out = servicesFromKube(obj as V1Service, [null as unknown as V1EndpointSlice, 7 as unknown as V1EndpointSlice], () => undefined, { trustDomain: TD })
    t.match(out.problems, [problem], JSON.stringify(obj))
  }
})
