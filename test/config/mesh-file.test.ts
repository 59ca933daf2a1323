// The mesh file: a good file becomes a frozen table; every bad one names file, line, key and fix.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { parseMesh } from '../../src/config/mesh-file.ts'
import { EndpointTable } from '../../src/discovery/endpoint-table.ts'
import { RemoraError } from '../../src/errors.ts'

const ROOT = new URL('../..', import.meta.url).pathname

t.test('the demo mesh file resolves workloads into endpoints with identities and aliases', async (t) => {
  const mesh = parseMesh(readFileSync(`${ROOT}deploy/local/mesh.yaml`, 'utf8'), 'mesh.yaml')
  const web = mesh.services.find((s) => s.name === 'web')
  t.ok(web)
  t.same(web?.authorities, ['web:80', 'web.demo:80', 'web.demo.svc:80', 'web.demo.svc.cluster.local:80'])
  t.equal(web?.key, 'web.demo:80', 'its key is name.namespace:port')
  t.same(web?.endpoints.map((e) => [e.address.host, e.address.port, e.targetPort, e.identity]), [['127.0.0.1', 15106, 18080, 'spiffe://cluster.local/ns/demo/sa/web']])
  t.equal(mesh.workloads.greeter.appPorts[0].protocol, 'grpc')
  t.ok(Object.isFrozen(mesh.services[0].endpoints[0]), 'config is frozen all the way down')
})

function errorOf (text: string): RemoraError {
  try {
    parseMesh(text, 'bad.yaml')
  } catch (err) {
    if (err instanceof RemoraError) return err
    throw err
  }
  throw new Error('parsed without error')
}

t.test('bad mesh files: each error names file:line:col, the key, and what is expected', async (t) => {
  const yaml = errorOf('services:\n  - name: web\n   port: 80\n')
  t.equal(yaml.code, 'REMORA_MESH_FILE_YAML')
  t.match(yaml.message, /^bad\.yaml:3:\d+: not valid YAML/)

  const typo = errorOf('services:\n  - name: web\n    port: 80\n    endpoint: []\n')
  t.equal(typo.code, 'REMORA_MESH_FILE_SCHEMA')
  t.match(typo.message, /bad\.yaml:2:5: services\[0\] needs key "endpoints"/)
  t.match(typo.message, /bad\.yaml:4:\d+: services\[0\]\.endpoint is not a known key/)

  const values = errorOf('services:\n  - name: Web_1\n    port: 99999\n    endpoints:\n      - { address: nohost, targetPort: 8080 }\n')
  t.match(values.message, /bad\.yaml:2:\d+: services\[0\]\.name must be a DNS label.*not "Web_1"/)
  t.match(values.message, /bad\.yaml:3:\d+: services\[0\]\.port must be <= 65535/)
  t.match(values.message, /bad\.yaml:5:\d+: services\[0\]\.endpoints\[0\]\.address must be host:port/)

  const both = errorOf('services:\n  - name: web\n    port: 80\n    endpoints:\n      - { address: "127.0.0.1:1", workload: web, targetPort: 1 }\nworkloads:\n  web: { appPorts: [1], sidecar: { inbound: "127.0.0.1:2" } }\n')
  t.match(both.message, /endpoints\[0\] needs exactly one of "workload".*or "address"/)

  const ref = errorOf('services:\n  - name: web\n    port: 80\n    endpoints:\n      - { workload: nope, targetPort: 8080 }\n')
  t.equal(ref.code, 'REMORA_MESH_FILE_REFERENCE')
  t.match(ref.message, /bad\.yaml:5:\d+: services\[0\]\.endpoints\[0\]\.workload names workload "nope"/)

  const port = errorOf('workloads:\n  web: { appPorts: [8080], sidecar: { inbound: "127.0.0.1:15006" } }\nservices:\n  - name: web\n    port: 80\n    endpoints:\n      - { workload: web, targetPort: 9090 }\n')
  t.match(port.message, /targetPort is 9090, which workload "web" does not list in appPorts/)

  const dup = errorOf('services:\n  - { name: web, port: 80, endpoints: [] }\n  - { name: web, port: 80, endpoints: [] }\n')
  t.match(dup.message, /bad\.yaml:3:\d+: services\[1\] repeats web\.default:80, already defined at services\[0\]/)

  const noSidecar = errorOf('workloads:\n  web: { appPorts: [8080] }\nservices:\n  - name: web\n    port: 80\n    endpoints:\n      - { workload: web, targetPort: 8080 }\n')
  t.match(noSidecar.message, /workloads\.web needs sidecar\.inbound/)
})

t.test('an empty file is an empty mesh, not an error', async (t) => {
  const mesh = parseMesh('', 'empty.yaml')
  t.same(mesh.services, [])
  t.equal(mesh.trustDomain, 'cluster.local')
})

t.test('service addresses (virtual IPs, as cluster IPs): a connection to one with the service port finds the service', async (t) => {
  const mesh = parseMesh([
    'services:',
    '  - name: db',
    '    port: 5432',
    '    protocol: opaque',
    '    addresses: [10.96.0.10, "fd00::a"]',
    '    endpoints:',
    '      - { address: "127.0.0.1:15106", targetPort: 15432 }',
    '  - name: web',
    '    port: 80',
    '    endpoints: []',
  ].join('\n'), 'mesh.yaml')
  const db = mesh.services[0]
  t.equal(db.protocol, 'opaque', 'protocol: opaque is accepted')
  t.same(db.authorities, ['db:5432', 'db.default:5432', 'db.default.svc:5432', 'db.default.svc.cluster.local:5432', '10.96.0.10:5432', '[fd00::a]:5432'])
  t.same(mesh.services[1].authorities, ['web:80', 'web.default:80', 'web.default.svc:80', 'web.default.svc.cluster.local:80'], 'no addresses: names only')
  const table = new EndpointTable()
  table.replace(mesh.services, 'file:mesh.yaml')
  t.equal(table.resolve('10.96.0.10:5432'), db)
  t.equal(table.resolve('[fd00::a]:5432'), db)
  t.equal(table.resolve('10.96.0.10:80'), undefined, 'the address with another port is not the service')
  t.equal(table.resolve('127.0.0.1:15432'), undefined, 'loopback endpoints (local mode) are not found by address')
})

t.test('a service address that is not an IP: an error naming file, line and services[i].addresses[j]', async (t) => {
  const bad = errorOf([
    'services:',
    '  - { name: web, port: 80, endpoints: [] }',
    '  - name: db',
    '    port: 5432',
    '    addresses:',
    '      - 10.96.0.10',
    '      - not-an-ip',
    '    endpoints: []',
  ].join('\n'))
  t.equal(bad.code, 'REMORA_MESH_FILE_REFERENCE')
  t.match(bad.message, /^bad\.yaml:7:\d+: services\[1\]\.addresses\[1\] is "not-an-ip", which is not an IPv4 or IPv6 address/)
  const bracketed = errorOf('services:\n  - { name: db, port: 5432, addresses: ["[fd00::a]"], endpoints: [] }\n')
  t.match(bracketed.message, /^bad\.yaml:2:\d+: services\[0\]\.addresses\[0\] is "\[fd00::a\]"/, 'an IPv6 address goes without brackets')
  const protocol = errorOf('services:\n  - { name: db, port: 5432, protocol: tcp, endpoints: [] }\n')
  t.equal(protocol.code, 'REMORA_MESH_FILE_SCHEMA')
  t.match(protocol.message, /bad\.yaml:2:\d+: services\[0\]\.protocol must be one of auto, http1, http2, grpc, opaque/, 'protocol is one of the known values (opaque, not tcp)')
})
