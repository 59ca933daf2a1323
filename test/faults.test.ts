// An error nothing caught: a harmless one (a connection already gone) is survived; anything else
// drains the sidecar (the request in flight still completes) and exits 1 to be restarted clean.
import t from 'tap'
import { request } from 'undici'
import { eventually, startMesh } from './harness/mesh.ts'
import { startApp } from './harness/apps.ts'

const FAULT = new URL('./fixtures/fault-on-signal.mjs', import.meta.url).href

t.test('a harmless uncaught error (ECONNRESET) is logged and counted; the sidecar serves on', async (t) => {
  const app = await startApp(t, (_req, res) => res.end('ok'))
  const mesh = await startMesh(t, {
    workloads: { edge: { appPorts: [1] }, web: { appPorts: [app.port] } },
    services: [{ name: 'web', port: 80, endpoints: [{ workload: 'web', targetPort: app.port }] }],
  }, { env: { NODE_OPTIONS: `--import=${FAULT}`, FAULT_CODE: 'ECONNRESET' } })
  const edge = mesh.sidecar('edge')
  edge.proc.kill('SIGUSR2')
  await eventually(() => edge.logs().some((l) => l.level === 'warn' && String(l.msg).includes('serving on')), 10_000, 'the warning')
  const line = edge.logs().find((l) => String(l.msg).includes('serving on'))
  t.match(line, { err: { message: 'injected fault', code: 'ECONNRESET' } }, 'logged with the error')
  const res = await request(`${edge.proxyUrl}/after`, { headers: { host: 'web' } })
  t.equal(await res.body.text(), 'ok', 'still serving')
  t.equal(edge.proc.exitCode, null, 'still running')
  const metrics = await (await request(`${edge.adminUrl}/metrics`)).body.text()
  t.match(metrics, /remora_unexpected_errors_total\{outcome="survived"\} 1/)
})

t.test('an unexpected uncaught error: logged with its stack, the request in flight completes, the sidecar exits 1', async (t) => {
  let release: () => void = () => {}
  const held = new Promise<void>((resolve) => { release = resolve })
  t.teardown(() => release())
  const app = await startApp(t, (_req, res) => { void held.then(() => res.end('finished')) })
  const mesh = await startMesh(t, {
    workloads: { edge: { appPorts: [1] }, web: { appPorts: [app.port] } },
    services: [{ name: 'web', port: 80, endpoints: [{ workload: 'web', targetPort: app.port }] }],
  }, { env: { NODE_OPTIONS: `--import=${FAULT}` } })
  const edge = mesh.sidecar('edge')
  const inFlight = request(`${edge.proxyUrl}/long`, { headers: { host: 'web' } })
  await eventually(() => app.requests === 1, 10_000, 'the request reached the app')
  const exited = new Promise<number | null>((resolve) => edge.proc.once('exit', (code) => resolve(code)))
  edge.proc.kill('SIGUSR2')
  await eventually(() => edge.logs().some((l) => l.level === 'fatal'), 10_000, 'the fatal line')
  const line = edge.logs().find((l) => l.level === 'fatal')
  t.match(line, { err: { message: 'injected fault', stack: /Error: injected fault\n/ }, msg: /draining, then exiting with code 1/ }, 'logged with the stack and what happens next')
  const ready = await request(`${edge.adminUrl}/ready`)
  t.equal(ready.statusCode, 503, 'not ready while draining')
  await ready.body.text()
  release()
  const res = await inFlight
  t.equal(await res.body.text(), 'finished', 'the request in flight completed')
  t.equal(await exited, 1, 'then the sidecar exits 1')
})
