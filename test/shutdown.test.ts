// Black-box: SIGTERM drains — in-flight requests finish, new work is refused with a reason, no hang.
import t from 'tap'
import { request } from 'undici'
import { startMesh } from './harness/mesh.ts'
import { startApp } from './harness/apps.ts'
import { waitForLines } from './harness/ready.ts'
import { measureSlowdown } from './harness/slowdown.ts'

/**
 * How many times slower than idle this machine runs now, measured before anything starts: the grace
 * periods are stretched by it, and so are the bounds on shutdown that are stated relative to them.
 */
const SLOWDOWN = measureSlowdown()

/** Resolves when the app has received a request for `path`: in flight through the sidecars, for sure. */
function arrival (): { seen: (path: string | undefined) => void, of: (path: string) => Promise<void> } {
  const waiting = new Map<string, () => void>()
  const arrived = new Set<string>()
  return {
    seen: (path) => { if (path !== undefined) { arrived.add(path); waiting.get(path)?.() } },
    of: (path) => arrived.has(path) ? Promise.resolve() : new Promise((resolve) => waiting.set(path, resolve)),
  }
}

t.test('SIGTERM lets an in-flight request finish, reports not ready, then exits 0 well before the grace period', async (t) => {
  const arrived = arrival()
  const app = await startApp(t, (req, res) => {
    arrived.seen(req.url)
    const delay = req.url === '/slow' ? 1500 : 0
    setTimeout(() => res.end(`done ${req.url}`), delay)
  })
  const graceMs = Math.round(10_000 * SLOWDOWN)
  t.comment(`the machine runs ${SLOWDOWN.toFixed(2)}× slower than idle: a ${graceMs} ms grace period`)
  const mesh = await startMesh(t, {
    workloads: { client: { appPorts: [1] }, web: { appPorts: [app.port] } },
    services: [{ name: 'web', port: 80, endpoints: [{ workload: 'web', targetPort: app.port }] }],
  }, { env: { REMORA_SHUTDOWN_GRACE: `${graceMs}ms` } })
  const client = mesh.sidecar('client')
  const web = mesh.sidecar('web')

  const inflight = request(`${client.proxyUrl}/slow`, { headers: { host: 'web' } })
  // In flight once the app has it (a fixed pause could end before it got there on a busy machine).
  await arrived.of('/slow')
  const started = Date.now()
  const exited = web.stop('SIGTERM')
  await waitForLines('sidecar web', web.proc, () => web.output, (l) => l.includes('"msg":"draining: '))
  const ready = await request(`${web.adminUrl}/ready`).then(async (r) => ({ status: r.statusCode, body: await r.body.text() }), () => ({ status: 0, body: 'admin closed' }))
  t.not(ready.status, 200, `/ready is no longer 200 while draining (${ready.body.trim()})`)

  const res = await inflight
  t.equal(res.statusCode, 200, 'the in-flight request completed')
  t.equal(await res.body.text(), 'done /slow')
  t.equal(await exited, 0, 'exit code 0')
  t.ok(Date.now() - started < graceMs / 2, 'exited once idle, not after the whole grace period')
  t.match(web.output, /draining/)

  const after = await request(`${client.proxyUrl}/fast`, { headers: { host: 'web' } })
  t.equal(after.statusCode, 502, 'a request after the peer is gone fails fast')
  t.equal(after.headers['remora-proxy-error'], 'connect refused')
  await after.body.text()
})

t.test('a request longer than the grace period is cut with a reason when the grace period ends', async (t) => {
  const arrived = arrival()
  const app = await startApp(t, (req, res) => { arrived.seen(req.url); setTimeout(() => res.end('too late'), 20_000 * SLOWDOWN).unref() })
  const graceMs = Math.round(1000 * SLOWDOWN)
  const mesh = await startMesh(t, {
    workloads: { client: { appPorts: [1] }, web: { appPorts: [app.port] } },
    services: [{ name: 'web', port: 80, endpoints: [{ workload: 'web', targetPort: app.port }] }],
  }, { env: { REMORA_SHUTDOWN_GRACE: `${graceMs}ms` } })
  const client = mesh.sidecar('client')
  const inflight = request(`${client.proxyUrl}/forever`, { headers: { host: 'web' } })
  await arrived.of('/forever')
  const started = Date.now()
  t.equal(await mesh.sidecar('web').stop('SIGTERM'), 0)
  t.ok(Date.now() - started < 4 * graceMs, 'the grace period bounds the shutdown')
  const res = await inflight
  t.equal(res.statusCode, 502, 'the caller gets an answer, not a hang')
  t.equal(res.headers['remora-proxy-error'], 'upstream reset')
  await res.body.text()
})
