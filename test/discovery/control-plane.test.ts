// Black-box: sidecars fed by a real `remora control` process: lazy watches, the control plane killed
// and restarted under load with zero failed requests, fast failure for never-resolved authorities.
import t from 'tap'
import { Pool } from 'undici'
import { SidecarProcess, eventually, freePort, startSidecars, writeMesh, type MeshSpec } from '../harness/mesh.ts'
import { namedApp, startApp } from '../harness/apps.ts'
import { ControlProcess, startControl } from '../harness/control.ts'
import { metric } from '../harness/metrics.ts'
import { START_TIMEOUT_MS } from '../harness/ready.ts'
import { measureSlowdown } from '../harness/slowdown.ts'

interface TableView { source: string, services: Array<{ name: string }>, revisions?: Record<string, number> }
const table = async (adminUrl: string): Promise<TableView> => await (await fetch(`${adminUrl}/endpoints.json`)).json() as TableView

function loop (pool: Pool, host: string): { seen: string[], failures: string[], stop: () => Promise<void> } {
  const seen: string[] = []
  const failures: string[] = []
  let running = true
  const done = (async () => {
    while (running) {
      try {
        const res = await pool.request({ path: '/', method: 'GET', headers: { host } })
        const body = await res.body.text()
        if (res.statusCode !== 200) failures.push(`${res.statusCode} ${String(res.headers['remora-proxy-error'])} ${body}`)
        else seen.push(body.split(' ')[0])
      } catch (err) { failures.push((err as Error).message) }
    }
  })()
  return { seen, failures, stop: async () => { running = false; await done } }
}

t.test('sidecars watch only what their app calls, and keep serving while the control plane is away', async (t) => {
  const a = await startApp(t, namedApp('a'))
  const b = await startApp(t, namedApp('b'))
  const spec = (target: 'a' | 'b'): MeshSpec => ({
    workloads: { client: { appPorts: [1] }, a: { appPorts: [a.port] }, b: { appPorts: [b.port] } },
    services: [
      { name: 'web', port: 80, endpoints: [{ workload: target, targetPort: target === 'a' ? a.port : b.port }] },
      { name: 'unused', port: 80, endpoints: [{ workload: 'b', targetPort: b.port }] },
    ],
  })
  // The control plane serves the mesh file's services; the sidecars read only their workload entry.
  const mesh = await writeMesh(spec('a'))
  const cp = await startControl(t, ['--mesh-file', mesh.file])
  // A never-resolved authority waits this long for the control plane's answer, unless it is known to be
  // away: then it fails at once. Long, so that "at once" stands apart on however busy a machine.
  const discoveryTimeoutMs = 30_000
  await startSidecars(t, mesh, { env: { REMORA_CONTROL_ADDR: cp.address, REMORA_DISCOVERY_TIMEOUT: `${discoveryTimeoutMs}ms` } })
  const client = mesh.sidecar('client')

  const before = await table(client.adminUrl)
  t.equal(before.source, `control:${cp.address}`, 'the table comes from the control plane')
  t.same(before.services, [], 'nothing is downloaded before the app asks')

  const pool = new Pool(client.proxyUrl, { connections: 4 })
  t.teardown(() => pool.close())
  const traffic = loop(pool, 'web')
  await eventually(() => traffic.seen.length > 20, START_TIMEOUT_MS, 'traffic flows')
  const after = await table(client.adminUrl)
  t.same(after.services.map((s) => s.name), ['web'], 'only the called service is watched')
  t.ok((after.revisions ?? {})['web.test:80'] > 0, 'with its control-plane revision')
  t.equal(await metric(client.adminUrl, 'remora_discovery_connected'), 1)

  // Control plane gone: known services keep working; a never-resolved authority fails fast.
  await cp.stop('SIGKILL')
  await eventually(async () => await metric(client.adminUrl, 'remora_discovery_connected') === 0, START_TIMEOUT_MS, 'sidecar notices')
  const n = traffic.seen.length
  await eventually(() => traffic.seen.length > n + 50, START_TIMEOUT_MS, 'traffic continues without the control plane')
  const started = Date.now()
  const res = await pool.request({ path: '/', method: 'GET', headers: { host: 'unused' } })
  const body = await res.body.text()
  t.equal(res.statusCode, 503)
  t.equal(res.headers['remora-proxy-error'], 'discovery unavailable', body)
  t.ok(Date.now() - started < discoveryTimeoutMs / 3, `failed fast (${Date.now() - started} ms, not the ${discoveryTimeoutMs} ms wait for an answer)`)

  // While it is away the mesh changes; when it is back the sidecar resubscribes and reconciles.
  await mesh.write(spec('b'))
  await cp.start()
  // The sidecar reconnects with backoff (up to 15 s between tries), so the wait is a guard only.
  await eventually(() => traffic.seen.at(-1) === 'b', START_TIMEOUT_MS, 'traffic moved to b after the control plane returned')
  await traffic.stop()
  t.same(traffic.failures, [], 'zero failed requests for the known service')
  t.ok(await metric(client.adminUrl, 'remora_discovery_reconnects_total') >= 1, 'the reconnect is counted')
  t.match(client.output, /discovery connected; resubscribing/)
})

t.test('a sidecar is ready only after its first sync; idle watches are dropped and come back on use', async (t) => {
  const a = await startApp(t, namedApp('a'))
  const spec: MeshSpec = {
    workloads: { client: { appPorts: [1] }, a: { appPorts: [a.port] } },
    services: [{ name: 'web', port: 80, endpoints: [{ workload: 'a', targetPort: a.port }] }],
  }
  const mesh = await writeMesh(spec)
  await startSidecars(t, mesh, { only: ['a'] })
  const cp = new ControlProcess(['--mesh-file', mesh.file])
  t.teardown(() => cp.stop('SIGKILL'))
  cp.discoveryPort = await freePort()
  cp.adminPort = await freePort()

  // The control plane is not running yet: the sidecar starts but is not ready.
  const ports = mesh.ports.get('client')
  if (ports === undefined) throw new Error('no ports')
  // A watch unused this long is dropped: 1 s on an idle machine, longer in proportion on a busy one
  // (measured just before it starts), or the watch may go before the test has looked at it.
  const idleMs = Math.round(1000 * measureSlowdown())
  const sidecar = new SidecarProcess('client', ports, ['--mesh-file', mesh.file, '--workload', 'client'], { ...process.env, REMORA_CONTROL_ADDR: cp.address, REMORA_DISCOVERY_IDLE: `${idleMs}ms` })
  t.teardown(() => sidecar.stop('SIGKILL'))
  const notReady = await sidecar.startNotReady(2000)
  t.equal(notReady.status, 503, 'not ready without the control plane')
  t.match(notReady.body, /not connected to the control plane/)
  await cp.start()
  await sidecar.waitReady()

  const pool = new Pool(sidecar.proxyUrl, { connections: 1 })
  t.teardown(() => pool.close())
  const get = async (): Promise<number> => (await pool.request({ path: '/', method: 'GET', headers: { host: 'web' } })).statusCode
  t.equal(await get(), 200, 'the first request waits for the answer')
  t.same((await table(sidecar.adminUrl)).services.map((s) => s.name), ['web'])
  await eventually(async () => (await table(sidecar.adminUrl)).services.length === 0, 6 * idleMs, 'idle watch dropped')
  t.equal(await get(), 200)
  t.same((await table(sidecar.adminUrl)).services.map((s) => s.name), ['web'], 'watched again on use')
})
