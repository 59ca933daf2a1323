// The mesh file: a good file becomes a frozen table; every bad one names file, line, key and fix.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { parseMesh } from '../../src/config/mesh-file.ts'
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
