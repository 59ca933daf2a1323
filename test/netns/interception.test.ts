// Transparent interception end to end, in real network namespaces: pods with `remora init` rules, a
// sidecar as UID 2102 and an unmodified app; curl, Node, amqplib, mariadb, psql and redis-cli reach
// each other and the machine's real brokers and databases through two sidecars, over mTLS.
import t from 'tap'
import { chmodSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { Fabric, netnsSkipReason, SIDECAR_UID, type Pod, type PodProcess } from '../harness/netns.ts'
import { CLI, ROOT, freePort } from '../harness/mesh.ts'
import { ControlProcess } from '../harness/control.ts'
import { parseMetrics, value, type MetricFamily } from '../harness/metrics.ts'

const skip = netnsSkipReason()
const FIXTURES = join(ROOT, 'test/fixtures/netns')
const VIP = { web: '10.96.0.10', greeter: '10.96.0.11', rabbitmq: '10.96.0.20', mariadb: '10.96.0.21', postgres: '10.96.0.22', redis: '10.96.0.23' }

t.test('pods in network namespaces: interception, opaque TCP, egress', { skip }, async (t) => {
  const fabric = await Fabric.create(t, { pods: ['a', 'b', 'c', 'db', 'outside'] as const })
  const { a, b, c, db, outside } = fabric.pods

  // The mesh: web (pod b), and the machine's RabbitMQ, MariaDB, PostgreSQL and Redis behind pod db,
  // each Service with a cluster IP as Kubernetes gives it. Pod c only allows mesh destinations.
  const dir = mkdtempSync(join(tmpdir(), 'remora-netns-'))
  chmodSync(dir, 0o755)
  const workload = (pod: Pod, appPorts: number[]): Record<string, unknown> => ({ namespace: 'test', appPorts, sidecar: { inbound: `${pod.ip}:15006` }, bootstrapToken: `token-${pod.name}-0123456789abcdef` })
  const service = (name: keyof typeof VIP, port: number, pod: string, targetPort: number): Record<string, unknown> =>
    ({ name, namespace: 'test', port, addresses: [VIP[name]], endpoints: [{ workload: pod, targetPort }] })
  const meshFile = join(dir, 'mesh.yaml')
  writeFileSync(meshFile, stringify({
    workloads: { a: workload(a, [1]), b: workload(b, [8080, 7777]), c: workload(c, [1]), db: workload(db, [5672, 3306, 5432, 6379]) },
    services: [service('web', 80, 'b', 8080), service('greeter', 7777, 'b', 7777), service('rabbitmq', 5672, 'db', 5672), service('mariadb', 3306, 'db', 3306), service('postgres', 5432, 'db', 5432), service('redis', 6379, 'db', 6379)],
  }), { mode: 0o644 })

  // The control plane in the root namespace, on the bridge address, with a development CA.
  const controlPort = await freePort()
  const caDir = join(dir, 'ca')
  const control = new ControlProcess(['--discovery-addr', `${fabric.bridgeIp}:${controlPort}`, '--mesh-file', meshFile, '--ca', `dev:${caDir}`, '--serving-names', fabric.bridgeIp])
  t.teardown(() => control.stop('SIGKILL'))
  await control.start()
  chmodSync(caDir, 0o755)
  for (const f of readdirSync(caDir)) if (f.endsWith('root.pem')) chmodSync(join(caDir, f), 0o644)

  // Each meshed pod: `remora init` (as an init container would), then the sidecar as UID 2102.
  const sidecars = new Map<string, PodProcess>()
  for (const pod of [a, b, c, db]) {
    const init = await pod.run(process.execPath, [CLI, 'init'], { env: { REMORA_IPV6: 'off' } })
    t.equal(init.code, 0, `remora init in pod ${pod.name}: ${init.stderr}`)
  }
  await Promise.all([a, b, c, db].map(async (pod) => {
    const sidecar = pod.node([CLI, 'proxy'], {
      uid: SIDECAR_UID,
      env: {
        REMORA_MESH_FILE: meshFile,
        REMORA_WORKLOAD: pod.name,
        REMORA_CONTROL_ADDR: `${fabric.bridgeIp}:${controlPort}`,
        REMORA_TRUST_ANCHORS: join(caDir, 'root.pem'),
        REMORA_INBOUND_ADDR: '0.0.0.0:15006',
        REMORA_OUTBOUND_ADDR: '127.0.0.1:15001',
        REMORA_ADMIN_ADDR: '0.0.0.0:15000',
        ...(pod === c ? { REMORA_OUTBOUND_POLICY: 'registry-only' } : {}),
        // A short detection wait, so the test of a silent client on an unlisted port is quick.
        ...(pod === a ? { REMORA_DETECT_TIMEOUT: '300ms' } : {}),
      },
    })
    sidecars.set(pod.name, sidecar)
    await sidecar.waitForLine('sidecar ready')
  }))
  const logs = (pod: Pod): Array<Record<string, unknown>> => (sidecars.get(pod.name)?.output() ?? '').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>)
  /** Waits for the access-log line `match` accepts: a line is written when its request or connection ends, after the client has its answer. */
  const logged = async (pod: Pod, match: (l: Record<string, unknown>) => boolean): Promise<boolean> => {
    await sidecars.get(pod.name)?.waitForLine((line) => line.startsWith('{') && match(JSON.parse(line) as Record<string, unknown>))
    return true
  }
  const metrics = async (pod: Pod): Promise<MetricFamily[]> => {
    const r = await fabric.pods.outside.run('curl', ['-sS', `http://${pod.ip}:15000/metrics`])
    return parseMetrics(r.stdout)
  }

  // Apps: plain servers that know nothing of the mesh.
  await b.node([join(FIXTURES, 'http-app.ts'), '8080', 'web']).waitForLine('listening')
  await b.node([join(FIXTURES, 'greeter.ts'), '7777']).waitForLine('listening')
  await outside.node([join(FIXTURES, 'http-app.ts'), '9000', 'outside']).waitForLine('listening')
  const forwards = await Promise.all([5672, 3306, 5432, 6379].map((port) => fabric.forward({ host: '127.0.0.1', port })))
  await db.node([join(FIXTURES, 'relay.ts'), ...forwards.map((f, i) => `${[5672, 3306, 5432, 6379][i]}=${f.host}:${f.port}`)]).waitForLine('listening')

  await t.test('curl and a plain Node client reach the app in pod b by pod IP and by service address, through both sidecars, over mTLS', async (t) => {
    const capture = await fabric.capture(b, 'tcp port 15006')
    for (const url of [`http://${b.ip}:8080/by-pod-ip`, `http://${VIP.web}/by-service-ip`]) {
      const r = await a.run('curl', ['-sS', '--max-time', '20', url])
      t.equal(r.code, 0, `curl ${url}: ${r.stderr}`)
      const seen = JSON.parse(r.stdout || '{}') as Record<string, unknown>
      t.match(seen, { app: 'web', path: new URL(url).pathname, clientId: 'spiffe://cluster.local/ns/test/sa/a', from: '127.0.0.1' }, `curl ${url}: the app saw the caller's mesh identity, from its own sidecar`)
    }
    const node = await a.run(process.execPath, ['-e', `fetch('http://${VIP.web}/from-node').then((r) => r.text()).then(console.log)`])
    t.match(JSON.parse(node.stdout || '{}'), { path: '/from-node', clientId: 'spiffe://cluster.local/ns/test/sa/a' }, 'a plain Node client (fetch) too')
    const captured = await capture.stop()
    const hellos = captured.clientHellos().filter((h) => h.dst === b.ip && h.dport === 15006)
    // curl and fetch speak HTTP/1.1: sidecars carry it as HTTP/1.1 over mTLS (DESIGN.md, the request path).
    t.ok(hellos.length > 0 && hellos.every((h) => h.alpn.length === 1 && h.alpn[0] === 'remora-http/1.1'), `on the wire: TLS ClientHellos with ALPN remora-http/1.1 to pod b's sidecar (${JSON.stringify(hellos)})`)
    t.notOk(captured.includes('/by-service-ip'), 'and no plaintext HTTP: the request path never appears on the wire')
    t.ok(await logged(a, (l) => l.access === 'outbound' && l.path === '/by-service-ip' && l.endpoint === `${b.ip}:15006/8080` && l.status === 200), 'pod a\'s sidecar logged the outbound request to web')
    t.ok(await logged(b, (l) => l.access === 'inbound' && l.path === '/by-pod-ip' && l.status === 200), 'pod b\'s sidecar logged it inbound')
    // The app opened three connections (two curls, one fetch); the sidecar's own connections to pod b,
    // to the control plane and to its peers were not redirected back into its outbound listener.
    t.equal(value(await metrics(a), 'remora_tcp_connections_opened_total', { direction: 'outbound' }), 3, 'pod a\'s outbound listener saw exactly the app\'s three connections: the proxy\'s own were not looped back')
    t.notOk(logs(a).some((l) => typeof l.destination === 'string' && l.destination.endsWith(':15006')), 'and no access line names a sidecar port as a destination')
  })

  await t.test('a destination outside the mesh: reached unchanged (allow-any), refused clearly (registry-only)', async (t) => {
    const r = await a.run('curl', ['-sS', '--max-time', '20', `http://${outside.ip}:9000/public-api`])
    t.equal(r.code, 0, r.stderr)
    t.match(JSON.parse(r.stdout || '{}'), { app: 'outside', path: '/public-api', clientId: null, from: a.ip }, 'the outside server saw pod a itself and no mesh header')
    t.ok(await logged(a, (l) => l.proto === 'TCP' && l.route === 'passthrough' && l.destination === `${outside.ip}:9000`), 'logged as passed through')
    const refused = await c.run('curl', ['-sS', '--max-time', '20', `http://${outside.ip}:9000/public-api`])
    t.not(refused.code, 0, `registry-only: the connection fails (${refused.stderr.trim()})`)
    t.ok(await logged(c, (l) => l.proto === 'TCP' && l.route === 'refused' && String(l.error).startsWith('registry-only')), 'and pod c\'s sidecar says why')
  })

  await t.test('AMQP with amqplib: a publisher in pod a, a consumer in pod b, the real RabbitMQ behind pod db; every message, in order', async (t) => {
    const queue = `remora-netns-${process.pid}`
    const url = `amqp://guest:guest@${VIP.rabbitmq}:5672`
    const consumer = b.node([join(FIXTURES, 'amqp.ts'), 'consume', url, queue, '200'])
    await consumer.waitForLine('consuming')
    const published = await a.run(process.execPath, [join(FIXTURES, 'amqp.ts'), 'publish', url, queue, '200'])
    t.equal(published.code, 0, published.stderr)
    const done = await consumer.waitForLine('done')
    t.same(JSON.parse(done.slice('done '.length)), Array.from({ length: 200 }, (_, i) => i + 1), 'all 200 messages arrived, in order')
  })

  await t.test('MariaDB (server speaks first), PostgreSQL and Redis with their own clients, with no detection stall', async (t) => {
    const timed = async (pod: Pod | undefined, cmd: string, args: string[]): Promise<{ out: string, ms: number }> => {
      const started = performance.now()
      const r = pod === undefined ? await fabric.pods.outside.run(cmd, args) : await pod.run(cmd, args)
      t.equal(r.code, 0, `${cmd}: ${r.stderr}`)
      return { out: r.stdout.trim(), ms: performance.now() - started }
    }
    const maria = await timed(a, 'mariadb', ['-h', VIP.mariadb, '-P', '3306', '-u', 'root', '--skip-ssl', '-N', '-e', 'SELECT 40+2'])
    t.equal(maria.out, '42', 'MariaDB answers through the mesh')
    const pg = await timed(a, 'psql', ['-h', VIP.postgres, '-p', '5432', '-U', 'postgres', '-d', 'test', '-Atc', 'SELECT 40+2'])
    t.equal(pg.out, '42', 'PostgreSQL answers through the mesh')
    const redis = await timed(a, 'redis-cli', ['-h', VIP.redis, '-p', '6379', 'PING'])
    t.equal(redis.out, 'PONG', 'Redis answers through the mesh')
    // The direct path for comparison: the same client from a pod with no sidecar, straight to the forward.
    const mariaDirect = await timed(outside, 'mariadb', ['-h', forwards[1].host, '-P', String(forwards[1].port), '-u', 'root', '--skip-ssl', '-N', '-e', 'SELECT 40+2'])
    t.comment(`first query, whole client run: MariaDB ${maria.ms.toFixed(0)} ms through the mesh vs ${mariaDirect.ms.toFixed(0)} ms direct; PostgreSQL ${pg.ms.toFixed(0)} ms; Redis ${redis.ms.toFixed(0)} ms`)
    for (const pod of [a, db]) {
      t.equal(value(await metrics(pod), 'remora_protocol_detect_timeouts_total'), 0, `pod ${pod.name}: no connection waited for detection`)
    }
    const flows = await metrics(a)
    t.ok(value(flows, 'remora_tcp_flows_opened_total', { direction: 'outbound', authority: 'mariadb.test:3306', peer: 'spiffe://cluster.local/ns/test/sa/db' }) >= 1, 'L4 metrics name the service and the peer identity')
    const dbFlows = await metrics(db)
    t.ok(value(dbFlows, 'remora_tcp_flows_opened_total', { direction: 'inbound', authority: ':3306', peer: 'spiffe://cluster.local/ns/test/sa/a' }) >= 1, 'and the inbound side the caller\'s')
  })

  await t.test('a server-first protocol on a port no list names: carried after the detection wait, counted and logged once', async (t) => {
    const client = `const s = require('node:net').connect(7777, '${VIP.greeter}'); s.once('data', (d) => { process.stdout.write(String(d)); s.destroy() })`
    for (let i = 0; i < 2; i++) {
      const r = await a.run(process.execPath, ['-e', client])
      t.equal(r.stdout, 'hello from greeter\n', `connection ${i + 1}: the greeting arrives once the client has been silent for REMORA_DETECT_TIMEOUT`)
    }
    t.equal(value(await metrics(a), 'remora_protocol_detect_timeouts_total', { direction: 'outbound', port: '7777' }), 2, 'each wait is counted, by port')
    await logged(a, (l) => l.level === 'warn' && l.port === 7777 && String(l.msg).includes('REMORA_OPAQUE_PORTS'))
    t.equal(logs(a).filter((l) => l.level === 'warn' && l.port === 7777).length, 1, 'and logged once for the port, saying how to skip the wait')
  })

  await t.test('opaque TCP between sidecars is mTLS with ALPN remora-tcp/1 on the wire', async (t) => {
    const capture = await fabric.capture(db, 'tcp port 15006')
    const r = await a.run('redis-cli', ['-h', VIP.redis, '-p', '6379', 'ECHO', 'remora-secret-marker'])
    t.equal(r.stdout.trim(), 'remora-secret-marker')
    const captured = await capture.stop()
    t.ok(captured.clientHellos().some((h) => h.dst === db.ip && h.alpn.includes('remora-tcp/1')), 'a ClientHello with ALPN remora-tcp/1')
    t.notOk(captured.includes('remora-secret-marker'), 'the payload never appears in plaintext')
  })
})
