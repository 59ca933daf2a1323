// HTTP/1.1 between sidecars travels on pools of keep-alive connections (DESIGN.md, the request
// path). HTTP/1.1 has no GOAWAY: a connection the peer closes just as a request is written on it
// loses that request, and a POST cannot be retried. So a draining sidecar keeps its peers' pooled
// connections open, answers every request on them with `Connection: close`, and stops only once
// the peers closed them. Black-box: steady POSTs to a service of two endpoints while one
// endpoint's sidecar drains and exits; every POST must be answered by an app.
import t from 'tap'
import { Pool } from 'undici'
import { startMesh } from './harness/mesh.ts'
import { startApp } from './harness/apps.ts'

const CONCURRENCY = 8

t.test('POSTs on pooled HTTP/1.1 peer connections all reach an app while one endpoint\'s sidecar drains and exits', async (t) => {
  const served = { a: 0, b: 0 }
  const app = (name: 'a' | 'b'): Parameters<typeof startApp>[1] => (req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => { body += c.toString() })
    req.on('end', () => { served[name]++; res.end(`${name} ${body}`) })
  }
  const a = await startApp(t, app('a'))
  const b = await startApp(t, app('b'))
  const mesh = await startMesh(t, {
    workloads: { client: { appPorts: [1] }, 'web-a': { appPorts: [a.port] }, 'web-b': { appPorts: [b.port] } },
    services: [{ name: 'web', port: 80, endpoints: [{ workload: 'web-a', targetPort: a.port }, { workload: 'web-b', targetPort: b.port }] }],
  }, { env: { REMORA_SHUTDOWN_GRACE: '20s' } })
  const client = mesh.sidecar('client')
  const webA = mesh.sidecar('web-a')

  const pool = new Pool(client.proxyUrl, { connections: CONCURRENCY })
  t.teardown(() => pool.destroy())
  const failures: string[] = []
  let sent = 0
  let stopAt = Infinity
  const exited: { after?: number } = {}
  const worker = async (): Promise<void> => {
    while (sent < stopAt) {
      const n = ++sent
      const res = await pool.request({ path: `/post/${n}`, method: 'POST', headers: { host: 'web' }, body: `payload ${n}` })
      const text = await res.body.text()
      if (res.statusCode !== 200 || !text.endsWith(` payload ${n}`)) failures.push(`#${n}: ${res.statusCode} ${String(res.headers['remora-proxy-error'] ?? '')} ${text.slice(0, 120)}`)
      // Keep going until well after web-a's sidecar exited.
      if (exited.after !== undefined && stopAt === Infinity) stopAt = sent + 500
    }
  }
  const load = Promise.all(Array.from({ length: CONCURRENCY }, worker))
  // Both endpoints in use, with pooled connections to each, before the drain.
  while (served.a < 200 || served.b < 200) await new Promise((resolve) => setImmediate(resolve))
  const code = await webA.stop('SIGTERM')
  exited.after = sent
  const exitedAt = sent
  await load
  t.equal(code, 0, 'web-a\'s sidecar drained and exited 0')
  t.comment(`${sent} POSTs; web-a's app served ${served.a}, web-b's ${served.b}; web-a's sidecar exited after #${exitedAt}`)
  t.same(failures.slice(0, 10), [], `every POST was answered by an app (${failures.length} were not)`)
  t.ok(sent - exitedAt >= 500, 'the load went on after web-a\'s sidecar exited')
})
