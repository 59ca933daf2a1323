// The endpoint table: which Host / :authority finds which service, and what /endpoints.json shows
// as the mesh file is replaced or the control plane sends services one at a time.
import t from 'tap'
import { EndpointTable, normalizeAuthority, type TableState } from '../../src/discovery/endpoint-table.ts'
import { authoritiesOf, serviceKeyOf, type Endpoint, type Service } from '../../src/mesh/service.ts'
import { DEFAULT_SERVICE_POLICY } from '../../src/resilience/policy.ts'

function service (name: string, namespace = 'demo', port = 80, endpoints: readonly Endpoint[] = []): Service {
  return { name, namespace, port, protocol: 'auto', key: serviceKeyOf(name, namespace, port), authorities: authoritiesOf(name, namespace, port), endpoints, policy: DEFAULT_SERVICE_POLICY }
}

const endpoint = (port: number): Endpoint => ({ address: { host: '127.0.0.1', port }, targetPort: 8080, weight: 1, identity: 'spiffe://cluster.local/ns/demo/sa/web', key: `127.0.0.1:${port}/8080` })

t.test('normalizeAuthority: lower case, default port 80, no trailing dot, no surrounding space', async (t) => {
  t.equal(normalizeAuthority('web'), 'web:80', 'no port means 80')
  t.equal(normalizeAuthority('web:80'), 'web:80')
  t.equal(normalizeAuthority('web:8080'), 'web:8080', 'an explicit port stays')
  t.equal(normalizeAuthority('WEB.Demo:8080'), 'web.demo:8080', 'host names are case-insensitive')
  t.equal(normalizeAuthority('web.demo.svc.cluster.local.'), 'web.demo.svc.cluster.local:80', 'a fully qualified name with its root dot')
  t.equal(normalizeAuthority('Web.Demo.svc.cluster.local.:80'), 'web.demo.svc.cluster.local:80')
  t.equal(normalizeAuthority('web.:9090'), 'web:9090')
  t.equal(normalizeAuthority('  web:80 '), 'web:80', 'surrounding whitespace is ignored')
  t.equal(normalizeAuthority('127.0.0.1'), '127.0.0.1:80')
  t.equal(normalizeAuthority('127.0.0.1:15001'), '127.0.0.1:15001')
})

t.test('normalizeAuthority: IPv6 literals keep their brackets; the port after them is the port', async (t) => {
  t.equal(normalizeAuthority('[::1]'), '[::1]:80', 'the last group of an address is no port')
  t.equal(normalizeAuthority('[::1]:8080'), '[::1]:8080')
  t.equal(normalizeAuthority('[FE80::1]:80'), '[fe80::1]:80')
  t.equal(normalizeAuthority('[2001:db8::80]'), '[2001:db8::80]:80', 'digits after the last colon inside the brackets are no port either')
})

t.test('normalizeAuthority is idempotent', async (t) => {
  for (const a of ['web', 'WEB.demo.', 'web:8080', '[::1]', 'web.demo.svc.cluster.local.:80']) {
    const once = normalizeAuthority(a)
    t.equal(normalizeAuthority(once), once, a)
  }
})

t.test('normalizeAuthority: an empty port is the default port (RFC 9110 §4.2.3)', async (t) => {
  t.equal(normalizeAuthority('web:'), 'web:80')
  t.equal(normalizeAuthority('web.demo.svc.cluster.local.:'), 'web.demo.svc.cluster.local:80')
})

t.test('an empty table is not loaded and resolves nothing', async (t) => {
  const table = new EndpointTable()
  t.equal(table.loaded, false)
  t.equal(table.state.version, 0)
  t.equal(table.state.source, 'none')
  t.same(table.state.services, [])
  t.equal(table.resolve('web'), undefined)
})

t.test('resolve finds a service by every authority form a caller may use', async (t) => {
  const table = new EndpointTable()
  const web = service('web', 'demo', 80)
  table.replace([web], 'file:/etc/mesh.yaml')
  for (const a of [
    'web', 'web:80', 'web.demo', 'web.demo:80', 'web.demo.svc', 'web.demo.svc:80',
    'web.demo.svc.cluster.local', 'web.demo.svc.cluster.local:80', 'web.demo.svc.cluster.local.', 'web.demo.svc.cluster.local.:80',
    'WEB', 'Web.Demo.svc.cluster.local.:80', ' web:80 ',
  ]) {
    t.equal(table.resolve(a), web, JSON.stringify(a))
  }
  for (const a of ['web:8080', 'web.other', 'web.demo.svc.cluster', 'web.demo.svc.example.com', 'api', '', 'web.demo.svc.cluster.local:81']) {
    t.equal(table.resolve(a), undefined, `${JSON.stringify(a)} is not web`)
  }
})

t.test('a service on another port answers only with that port', async (t) => {
  const table = new EndpointTable()
  const grpc = service('api', 'demo', 9090)
  const http = service('api', 'demo', 80)
  table.replace([grpc, http], 'file:mesh.yaml')
  t.equal(table.resolve('api:9090'), grpc)
  t.equal(table.resolve('api.demo.svc.cluster.local:9090'), grpc)
  t.equal(table.resolve('api'), http, 'no port means 80')
  t.equal(table.resolve('api:9091'), undefined)
})

t.test('the same name in two namespaces: the qualified forms tell them apart', async (t) => {
  const table = new EndpointTable()
  const a = service('web', 'a')
  const b = service('web', 'b')
  table.replace([a, b], 'file:mesh.yaml')
  t.equal(table.resolve('web.a'), a)
  t.equal(table.resolve('web.b.svc.cluster.local'), b)
})

t.test('replace swaps the whole table: services left out are gone', async (t) => {
  const table = new EndpointTable()
  const web = service('web')
  const api = service('api')
  table.replace([web, api], 'file:mesh.yaml')
  t.equal(table.loaded, true)
  t.equal(table.state.version, 1)
  const web2 = service('web', 'demo', 80, [endpoint(15006)])
  table.replace([web2], 'file:mesh.yaml')
  t.equal(table.state.version, 2)
  t.equal(table.resolve('web'), web2, 'the new web, with its endpoints')
  t.same(table.resolve('web')?.endpoints.map((e) => e.key), ['127.0.0.1:15006/8080'])
  t.equal(table.resolve('api'), undefined, 'api is gone')
  t.same(table.state.services, [web2])
  table.replace([], 'file:mesh.yaml')
  t.equal(table.resolve('web'), undefined, 'an empty file empties the table')
  t.equal(table.loaded, true, 'still loaded: the source said "nothing"')
})

t.test('upsert adds or changes one service and keeps the others, with its revision', async (t) => {
  const table = new EndpointTable()
  const web = service('web')
  const api = service('api')
  table.upsert(web, 'control:127.0.0.1:15010', 3)
  t.equal(table.loaded, true)
  table.upsert(api, 'control:127.0.0.1:15010', 7)
  t.equal(table.resolve('web'), web)
  t.equal(table.resolve('api.demo'), api)
  t.same(table.state.revisions, { 'web.demo:80': 3, 'api.demo:80': 7 })
  const web2 = service('web', 'demo', 80, [endpoint(1), endpoint(2)])
  table.upsert(web2, 'control:127.0.0.1:15010', 4)
  t.equal(table.resolve('web.demo.svc.cluster.local.'), web2, 'the changed service replaces the old one under every authority')
  t.equal(table.resolve('api'), api, 'the others stay')
  t.same(table.state.revisions, { 'web.demo:80': 4, 'api.demo:80': 7 })
  t.equal(table.state.services.length, 2)
  t.equal(table.state.version, 3)
})

t.test('remove drops one service and its revision; an unknown key changes nothing', async (t) => {
  const table = new EndpointTable()
  table.upsert(service('web'), 'control:cp:15010', 1)
  table.upsert(service('api'), 'control:cp:15010', 2)
  const before = table.state
  table.remove('nope.demo:80', 'control:cp:15010')
  t.equal(table.state, before, 'no new version for a key the table does not hold')
  table.remove('web.demo:80', 'control:cp:15010')
  t.equal(table.resolve('web'), undefined)
  t.ok(table.resolve('api'))
  t.same(table.state.revisions, { 'api.demo:80': 2 })
  t.equal(table.state.version, before.version + 1)
  table.remove('api.demo:80', 'control:cp:15010')
  t.equal(table.state.revisions, undefined, 'no revisions left: the field is absent')
  t.same(table.state.services, [])
})

t.test('replace after upserts forgets the revisions (the mesh file has none)', async (t) => {
  const table = new EndpointTable()
  table.upsert(service('web'), 'control:cp:15010', 5)
  table.replace([service('api')], 'file:mesh.yaml')
  t.equal(table.state.revisions, undefined)
  t.equal(table.state.source, 'file:mesh.yaml')
  t.equal(table.resolve('web'), undefined)
})

t.test('touch: a first sync with nothing in it makes the table loaded, once', async (t) => {
  const table = new EndpointTable()
  const seen: TableState[] = []
  table.on('update', (s) => seen.push(s))
  table.touch('control:cp:15010')
  t.equal(table.loaded, true)
  t.equal(table.state.source, 'control:cp:15010')
  t.same(table.state.services, [])
  table.touch('control:cp:15010')
  t.equal(table.state.version, 1, 'a second touch changes nothing')
  table.upsert(service('web'), 'control:cp:15010', 1)
  table.touch('control:cp:15010')
  t.equal(table.state.version, 2)
  t.equal(seen.length, 2)
})

t.test('every change emits update with the new state: version, source, time, services', async (t) => {
  const table = new EndpointTable()
  const seen: TableState[] = []
  table.on('update', (s) => seen.push(s))
  const start = Date.now()
  table.replace([service('web')], 'file:a.yaml')
  table.upsert(service('api'), 'control:cp:15010', 9)
  table.remove('web.demo:80', 'control:cp:15010')
  t.same(seen.map((s) => s.version), [1, 2, 3], 'versions count up by one per change')
  t.same(seen.map((s) => s.source), ['file:a.yaml', 'control:cp:15010', 'control:cp:15010'], 'the source of the last change')
  t.equal(seen.at(-1), table.state, 'the event carries the state the table now has')
  for (const s of seen) {
    t.match(s.updatedAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    t.ok(Date.parse(s.updatedAt) >= start - 1000, 'updatedAt is the time of the change')
  }
  t.same(seen.map((s) => s.services.map((x) => x.key)), [['web.demo:80'], ['web.demo:80', 'api.demo:80'], ['api.demo:80']])
})

t.test('a state once handed out does not change: /endpoints.json shows one consistent version', async (t) => {
  const table = new EndpointTable()
  table.replace([service('web')], 'file:mesh.yaml')
  const first = table.state
  t.ok(Object.isFrozen(first))
  table.upsert(service('api'), 'control:cp:15010', 1)
  t.equal(first.version, 1)
  t.same(first.services.map((s) => s.key), ['web.demo:80'], 'the earlier state still lists what it listed')
  t.equal(first.revisions, undefined)
  t.not(table.state, first)
})

t.test('the state serialises as /endpoints.json shows it', async (t) => {
  const table = new EndpointTable()
  table.upsert(service('web', 'demo', 80, [endpoint(15006)]), 'control:127.0.0.1:15010', 12)
  const json = JSON.parse(JSON.stringify(table.state)) as Record<string, unknown>
  t.same(Object.keys(json).sort(), ['revisions', 'services', 'source', 'updatedAt', 'version'])
  t.match(json, {
    source: 'control:127.0.0.1:15010',
    version: 1,
    revisions: { 'web.demo:80': 12 },
    services: [{
      name: 'web', namespace: 'demo', port: 80, key: 'web.demo:80',
      authorities: ['web:80', 'web.demo:80', 'web.demo.svc:80', 'web.demo.svc.cluster.local:80'],
      endpoints: [{ address: { host: '127.0.0.1', port: 15006 }, targetPort: 8080, key: '127.0.0.1:15006/8080' }],
    }],
  })
  const file = new EndpointTable()
  file.replace([service('web')], 'file:/etc/remora/mesh.yaml')
  t.notOk('revisions' in (JSON.parse(JSON.stringify(file.state)) as object), 'a mesh-file table has no revisions field')
})

/** A service with cluster IPs and endpoints on pod addresses, as the Kubernetes source makes them. */
function kubeService (name: string, port: number, clusterIps: string[], endpoints: Array<[host: string, targetPort: number]>): Service {
  return {
    ...service(name, 'demo', port),
    authorities: authoritiesOf(name, 'demo', port, clusterIps),
    endpoints: endpoints.map(([host, targetPort]) => ({ address: { host, port: 15006 }, targetPort, weight: 1, identity: `spiffe://cluster.local/ns/demo/sa/${name}`, key: `${host}:15006/${targetPort}` })),
  }
}

t.test('a redirected connection to a cluster IP finds the service by that IP and the service port', async (t) => {
  const table = new EndpointTable()
  const web = kubeService('web', 80, ['10.96.0.10', 'fd00::a'], [])
  const db = kubeService('db', 5432, ['10.96.0.20'], [])
  table.replace([web, db], 'control:cp:15010')
  t.equal(table.resolve('10.96.0.10:80'), web)
  t.equal(table.resolve('10.96.0.10'), web, 'no port means 80')
  t.equal(table.resolve('[fd00::a]:80'), web, 'IPv6 cluster IP')
  t.equal(table.resolve('[FD00::A]:80'), web, 'in any case')
  t.equal(table.resolve('10.96.0.20:5432'), db)
  t.equal(table.resolve('10.96.0.10:8080'), undefined, 'the cluster IP on another port is not the service')
  t.equal(table.resolve('10.96.0.11:80'), undefined)
})

t.test('a redirected connection to a pod IP and its app port finds the pod\'s service', async (t) => {
  const table = new EndpointTable()
  const web = kubeService('web', 80, ['10.96.0.10'], [['10.1.0.5', 8080], ['10.1.0.6', 8080], ['fd00:1::5', 8080]])
  table.replace([web], 'control:cp:15010')
  t.equal(table.resolve('10.1.0.5:8080'), web, 'endpoint 10.1.0.5:15006 with targetPort 8080')
  t.equal(table.resolve('10.1.0.6:8080'), web)
  t.equal(table.resolve('[fd00:1::5]:8080'), web, 'an IPv6 pod')
  t.equal(table.resolve('10.1.0.5:15006'), undefined, 'the sidecar\'s inbound port is not the app\'s')
  t.equal(table.resolve('10.1.0.5:80'), undefined, 'nor is the service port')
  t.same(table.state.services[0].authorities, web.authorities, 'pod addresses are for finding, not listed as the service\'s authorities')
})

t.test('loopback endpoints (local mode: every sidecar on 127.0.0.1) are not indexed by address', async (t) => {
  const table = new EndpointTable()
  const web = kubeService('web', 80, [], [['127.0.0.1', 8080], ['::1', 8081], ['localhost', 8082]])
  table.replace([web], 'file:mesh.yaml')
  t.equal(table.resolve('web'), web)
  for (const a of ['127.0.0.1:8080', '[::1]:8081', 'localhost:8082']) t.equal(table.resolve(a), undefined, a)
})

t.test('names win over endpoint addresses; the index follows upserts and removals', async (t) => {
  const table = new EndpointTable()
  // A pod address that is also (here, contrived) another service's cluster IP and port.
  const web = kubeService('web', 80, [], [['10.1.0.5', 8080]])
  const vip = kubeService('vip', 8080, ['10.1.0.5'], [])
  for (const order of [[web, vip], [vip, web]]) {
    table.replace(order, 'control:cp:15010')
    t.equal(table.resolve('10.1.0.5:8080'), vip, `the service's own authority wins (order ${order.map((s) => s.name).join(', ')})`)
  }
  table.replace([web], 'control:cp:15010')
  t.equal(table.resolve('10.1.0.5:8080'), web)
  table.upsert(kubeService('web', 80, [], [['10.1.0.7', 8080]]), 'control:cp:15010', 2)
  t.equal(table.resolve('10.1.0.5:8080'), undefined, 'the pod left the service: its address no longer finds it')
  t.equal(table.resolve('10.1.0.7:8080')?.name, 'web')
  table.remove('web.demo:80', 'control:cp:15010')
  t.equal(table.resolve('10.1.0.7:8080'), undefined)
})
