// Black-box: failures stay contained — a dead peer resets only its own streams; a restarted peer
// is reached again; a dead app is a clear 503.
import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import { startMesh } from './harness/mesh.ts'
import { namedApp, startApp } from './harness/apps.ts'

t.test('peer sidecar killed mid-stream: the client sees the stream end in error; other services keep working; the restarted peer serves again', async (t) => {
  const streaming = await startApp(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    const timer = setInterval(() => res.write('tick\n'), 50)
    res.on('close', () => clearInterval(timer))
  })
  const other = await startApp(t, namedApp('api'))
  const mesh = await startMesh(t, {
    workloads: { client: { appPorts: [1] }, web: { appPorts: [streaming.port] }, api: { appPorts: [other.port] } },
    services: [
      { name: 'web', port: 80, endpoints: [{ workload: 'web', targetPort: streaming.port }] },
      { name: 'api', port: 80, endpoints: [{ workload: 'api', targetPort: other.port }] },
    ],
  })
  const client = mesh.sidecar('client')
  const res = await request(`${client.proxyUrl}/stream`, { headers: { host: 'web' } })
  t.equal(res.statusCode, 200)
  let received = 0
  const ended = new Promise<string>((resolve) => {
    res.body.on('data', (c: Buffer) => { received += c.length })
    res.body.on('error', (err) => resolve(`error: ${err.message}`))
    res.body.on('end', () => resolve('clean end'))
  })
  await sleep(300)
  await mesh.sidecar('web').stop('SIGKILL')
  const outcome = await Promise.race([ended, sleep(5000).then(() => 'hang')])
  t.match(outcome, /^error/, `the stream ends in an error the client can see (${outcome})`)
  t.ok(received > 0, 'data flowed before the kill')

  const api = await request(`${client.proxyUrl}/still-here`, { headers: { host: 'api' } })
  t.equal(api.statusCode, 200, 'the client sidecar keeps serving other services')
  t.equal(await api.body.text(), 'api /still-here')

  await mesh.sidecar('web').start()
  const again = await request(`${client.proxyUrl}/stream`, { headers: { host: 'web' } })
  t.equal(again.statusCode, 200, 'the restarted peer is reached on a new connection')
  again.body.destroy()
})

t.test('app down behind a healthy sidecar: 503 with the reason and what to do', async (t) => {
  const mesh = await startMesh(t, {
    workloads: { client: { appPorts: [1] }, web: { appPorts: [1] } },
    services: [{ name: 'web', port: 80, endpoints: [{ workload: 'web', targetPort: 1 }] }],
  })
  const res = await request(`${mesh.sidecar('client').proxyUrl}/`, { headers: { host: 'web' } })
  t.equal(res.statusCode, 503)
  t.equal(res.headers['remora-proxy-error'], 'app unavailable')
  t.match(await res.body.text(), /app unavailable.*\nThe local app refused the connection/)
})

t.test('a service with no endpoints, and one whose sidecar is not running', async (t) => {
  const mesh = await startMesh(t, {
    workloads: { client: { appPorts: [1] }, ghost: { appPorts: [2] } },
    services: [
      { name: 'empty', port: 80, endpoints: [] },
      { name: 'ghost', port: 80, endpoints: [{ workload: 'ghost', targetPort: 2 }] },
    ],
  }, { only: ['client'] })
  const client = mesh.sidecar('client')
  const empty = await request(`${client.proxyUrl}/`, { headers: { host: 'empty' } })
  t.equal(empty.statusCode, 503)
  t.equal(empty.headers['remora-proxy-error'], 'no endpoints')
  await empty.body.text()
  const ghost = await request(`${client.proxyUrl}/`, { headers: { host: 'ghost' } })
  t.equal(ghost.statusCode, 502)
  t.equal(ghost.headers['remora-proxy-error'], 'connect refused')
  await ghost.body.text()
})
