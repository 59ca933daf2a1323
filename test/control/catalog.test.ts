// The control plane's catalog: lookup by name, by cluster IP and by a pod's IP and app port, following every change of the service.
import t from 'tap'
import { Catalog, type CatalogEntry } from '../../src/control/catalog.ts'
import { authoritiesOf, serviceKeyOf, type Service } from '../../src/mesh/service.ts'
import { DEFAULT_SERVICE_POLICY } from '../../src/resilience/policy.ts'

/** A service as the Kubernetes source makes it: cluster IPs, endpoints on pod IPs at the sidecar's inbound port. */
function service (name: string, pods: Array<[ip: string, targetPort: number]>, opts: { port?: number, clusterIps?: string[] } = {}): Service {
  const port = opts.port ?? 80
  return {
    name,
    namespace: 'demo',
    port,
    protocol: 'auto',
    key: serviceKeyOf(name, 'demo', port),
    authorities: authoritiesOf(name, 'demo', port, opts.clusterIps ?? []),
    endpoints: pods.map(([ip, targetPort]) => ({ address: { host: ip, port: 15006 }, targetPort, weight: 1, identity: `spiffe://cluster.local/ns/demo/sa/${name}`, key: `${ip}:15006/${targetPort}` })),
    policy: DEFAULT_SERVICE_POLICY,
  }
}

const keyOf = (c: Catalog, authority: string): string | undefined => c.lookup(authority)?.key

t.test('lookup by every name form, by the cluster IP with the port, and by a pod IP with its app port', async (t) => {
  const c = new Catalog()
  c.set(service('web', [['10.1.0.5', 8080], ['10.1.0.6', 8080]], { clusterIps: ['10.96.0.10', 'fd00::a'] }))
  for (const a of ['web', 'web:80', 'web.demo', 'web.demo.svc.cluster.local.:80', '10.96.0.10:80', '10.96.0.10', '[fd00::a]:80', '10.1.0.5:8080', '10.1.0.6:8080']) {
    t.equal(keyOf(c, a), 'web.demo:80', a)
  }
  for (const a of ['10.96.0.10:8080', '10.1.0.5:15006', '10.1.0.5:80', '10.1.0.7:8080']) {
    t.equal(keyOf(c, a), undefined, `${a}: not web`)
  }
})

t.test('loopback endpoints (local mode) are not looked up by address', async (t) => {
  const c = new Catalog()
  c.set(service('web', [['127.0.0.1', 8080], ['::1', 8081]]))
  t.equal(keyOf(c, 'web'), 'web.demo:80')
  t.equal(keyOf(c, '127.0.0.1:8080'), undefined)
  t.equal(keyOf(c, '[::1]:8081'), undefined)
})

t.test('a pod that leaves the service (set again without it) no longer finds it; one that joins does', async (t) => {
  const c = new Catalog()
  const changes: Array<[string, CatalogEntry | undefined]> = []
  c.on('change', (key, entry) => changes.push([key, entry]))
  c.set(service('web', [['10.1.0.5', 8080], ['10.1.0.6', 8080]], { clusterIps: ['10.96.0.10'] }))
  c.set(service('web', [['10.1.0.6', 8080], ['10.1.0.7', 8080]], { clusterIps: ['10.96.0.10'] }))
  t.equal(keyOf(c, '10.1.0.5:8080'), undefined, 'the pod that left')
  t.equal(keyOf(c, '10.1.0.6:8080'), 'web.demo:80', 'the pod that stayed')
  t.equal(keyOf(c, '10.1.0.7:8080'), 'web.demo:80', 'the pod that joined')
  t.equal(keyOf(c, '10.96.0.10:80'), 'web.demo:80', 'the cluster IP stays')
  t.equal(changes.length, 2)
  c.set(service('web', [['10.1.0.6', 9090]], { clusterIps: ['10.96.0.10'] }))
  t.equal(keyOf(c, '10.1.0.6:8080'), undefined, 'a new target port: the old IP:port no longer finds it')
  t.equal(keyOf(c, '10.1.0.6:9090'), 'web.demo:80')
})

t.test('a new cluster IP replaces the old one; delete and replace drop every address', async (t) => {
  const c = new Catalog()
  c.set(service('web', [['10.1.0.5', 8080]], { clusterIps: ['10.96.0.10'] }))
  c.set(service('web', [['10.1.0.5', 8080]], { clusterIps: ['10.96.0.11'] }))
  t.equal(keyOf(c, '10.96.0.10:80'), undefined, 'the Service was recreated with another cluster IP')
  t.equal(keyOf(c, '10.96.0.11:80'), 'web.demo:80')
  c.set(service('api', [['10.1.0.9', 9090]], { port: 9090, clusterIps: ['10.96.0.20'] }))
  c.delete('web.demo:80')
  for (const a of ['web', '10.96.0.11:80', '10.1.0.5:8080']) t.equal(keyOf(c, a), undefined, `${a} gone with the service`)
  t.equal(keyOf(c, '10.96.0.20:9090'), 'api.demo:9090', 'the other service stays')
  c.replace([], 'kubernetes')
  t.equal(keyOf(c, '10.1.0.9:9090'), undefined)
  t.equal(c.size, 0)
})

t.test('an identical copy changes nothing: no revision, no event, lookups the same', async (t) => {
  const c = new Catalog()
  let events = 0
  c.on('change', () => { events++ })
  c.set(service('web', [['10.1.0.5', 8080]], { clusterIps: ['10.96.0.10'] }))
  const revision = c.revision
  c.set(service('web', [['10.1.0.5', 8080]], { clusterIps: ['10.96.0.10'] }))
  t.equal(c.revision, revision)
  t.equal(events, 1)
  t.equal(keyOf(c, '10.1.0.5:8080'), 'web.demo:80')
})

t.test('a pod behind two services: either finds it; when one lets go, the other still does; names win over pod addresses', async (t) => {
  const c = new Catalog()
  c.set(service('web', [['10.1.0.5', 8080]]))
  c.set(service('web-canary', [['10.1.0.5', 8080]]))
  t.ok(['web.demo:80', 'web-canary.demo:80'].includes(keyOf(c, '10.1.0.5:8080') ?? ''), 'the shared pod finds one of its services')
  c.delete('web-canary.demo:80')
  t.equal(keyOf(c, '10.1.0.5:8080'), 'web.demo:80', 'the canary gone, the pod still finds web')
  c.set(service('web-canary', [['10.1.0.5', 8080]]))
  c.set(service('web', []))
  t.equal(keyOf(c, '10.1.0.5:8080'), 'web-canary.demo:80', 'the pod leaving web: it finds the canary')
  c.set(service('api', [], { clusterIps: ['10.1.0.9'], port: 8080 }))
  c.set(service('odd', [['10.1.0.9', 8080]]))
  t.equal(keyOf(c, '10.1.0.9:8080'), 'api.demo:8080', 'a service\'s own address wins over a pod with the same ip:port')
})

t.test('IPv6 cluster IPs and pod IPs are found in their short form, however they were written', async (t) => {
  const c = new Catalog()
  c.set(service('web', [['fd00:0:0:0::5', 8080]], { clusterIps: ['FD00:0:0::A'] }))
  t.equal(keyOf(c, '[fd00::a]:80'), 'web.demo:80', 'cluster IP, as SO_ORIGINAL_DST reports it')
  t.equal(keyOf(c, '[fd00::5]:8080'), 'web.demo:80', 'pod IP')
})
