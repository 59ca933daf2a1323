// Issue 18, "What to build": a cap on the connections each listener keeps open
// (REMORA_MAX_CONNECTIONS). Raw sockets against real sidecars: one connection over the cap is closed
// on arrival and counted; a freed place is taken again; requests on the open connections go on.
import t from 'tap'
import net from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { eventually, pairSpec, startMesh } from './harness/mesh.ts'
import { startApp } from './harness/http.ts'
import { metric } from './harness/metrics.ts'

const CAP = 5
const app = await startApp(t, (req, res) => { req.resume(); req.on('end', () => res.end('ok')) })
const mesh = await startMesh(t, pairSpec(app.port), { env: { REMORA_MAX_CONNECTIONS: String(CAP) } })
const client = mesh.sidecar('client')

async function open (): Promise<{ socket: net.Socket, closed: Promise<boolean> }> {
  const socket = net.connect(client.ports.outbound, '127.0.0.1')
  socket.on('error', () => {})
  const closed = new Promise<boolean>((resolve) => socket.once('close', () => resolve(true)))
  await Promise.race([new Promise((resolve) => socket.once('connect', resolve)), closed])
  return { socket, closed }
}

async function get (socket: net.Socket, path: string): Promise<string> {
  let got = ''
  const onData = (c: Buffer): void => { got += c.toString('latin1') }
  socket.on('data', onData)
  socket.write(`GET ${path} HTTP/1.1\r\nHost: web\r\n\r\n`)
  await eventually(() => /\r\n\r\nok$/.test(got), 5_000, `the answer to ${path}`)
  socket.off('data', onData)
  return got
}

t.test('one connection over REMORA_MAX_CONNECTIONS is closed on arrival and counted; the others keep working', async (t) => {
  const held = await Promise.all(Array.from({ length: CAP }, async () => await open()))
  t.teardown(() => { for (const c of held) c.socket.destroy() })
  // Each is accepted (it answers a request), so all CAP are open on the sidecar's side.
  for (const [i, c] of held.entries()) t.match(await get(c.socket, `/held-${i}`), /^HTTP\/1\.1 200 /, `connection ${i + 1} of ${CAP} is served`)
  const before = await metric(client.adminUrl, 'remora_downstream_connections_over_limit_total', { direction: 'outbound' })
  const extra = await open()
  extra.socket.write('GET /extra HTTP/1.1\r\nHost: web\r\n\r\n')
  t.equal(await Promise.race([extra.closed, sleep(5_000).then(() => false)]), true, 'the connection over the cap is closed')
  t.equal(await metric(client.adminUrl, 'remora_downstream_connections_over_limit_total', { direction: 'outbound' }), before + 1, 'and counted')
  // The line comes through the sidecar's stdout: it may arrive after the metric is scraped.
  const said = (): boolean => client.logs().some((l) => l.level === 'warn' && String(l.msg).includes('REMORA_MAX_CONNECTIONS'))
  try { await eventually(said, 5_000, 'the warning') } catch { /* asserted next */ }
  t.ok(said(), 'and said, naming the setting')
  t.match(await get(held[0].socket, '/still'), /^HTTP\/1\.1 200 /, 'an open connection still works')
  // A place freed is taken again.
  held[0].socket.destroy()
  await eventually(async () => (await metric(client.adminUrl, 'remora_tcp_connections_opened_total', { direction: 'outbound' })) - (await metric(client.adminUrl, 'remora_tcp_connections_closed_total', { direction: 'outbound' })) === CAP - 1, 5_000, 'the closed one counted closed')
  const again = await open()
  t.teardown(() => { again.socket.destroy() })
  t.match(await get(again.socket, '/again'), /^HTTP\/1\.1 200 /, 'a new connection is served once a place is free')
})
