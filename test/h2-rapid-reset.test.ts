// Black-box, issue 18 defect 4: rapid reset (HEADERS + RST_STREAM CANCEL in a tight loop) on one
// HTTP/2 connection. That connection is cut off quickly with GOAWAY ENHANCE_YOUR_CALM (counted),
// few of its streams reach the peer sidecar, and another client is served 200s all along (no 502).
import t from 'tap'
import http from 'node:http'
import http2 from 'node:http2'
import net from 'node:net'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { startMesh, freePort, pairSpec } from './harness/mesh.ts'
import { frame, hpack, PREFACE } from './harness/h2-frames.ts'

const HEADERS = hpack([[':method', 'GET'], [':scheme', 'http'], [':path', '/slow'], [':authority', 'web']])
const CANCEL = Buffer.from([0, 0, 0, 8])
const ENHANCE_YOUR_CALM = 11

let appRequests = 0
const appPort = await freePort()
const app = http.createServer((req, res) => {
  if (req.url === '/slow') appRequests++
  req.resume()
  // /slow answers late, so every reset comes before a response.
  setTimeout(() => { if (!res.destroyed) res.end('ok') }, req.url === '/slow' ? 200 : 0)
}).listen(appPort, '127.0.0.1')
await once(app, 'listening')
t.teardown(() => { app.closeAllConnections(); app.close() })

const BUDGET = 100
const mesh = await startMesh(t, pairSpec(appPort), { env: { REMORA_MAX_STREAM_RESETS: String(BUDGET) } })
const outbound = mesh.sidecar('client').ports.outbound

async function counter (sidecar: 'client' | 'web', name: string, labels: string): Promise<number> {
  const s = mesh.sidecar(sidecar)
  // A CI run once found the client sidecar gone after the burst, with nothing saying why.
  const res = await fetch(`${s.adminUrl}/metrics`).catch((err: Error) => { throw new Error(`${err.message}; ${s.deathReport() || `sidecar ${sidecar} still running`}`) })
  const text = await res.text()
  return text.split('\n').filter((l) => l.startsWith(`${name}{`) && l.includes(labels)).reduce((n, l) => n + Number(l.split(' ').pop()), 0)
}

interface Raw { socket: net.Socket, goaways: number[], closedAt: number | undefined }

/** A raw HTTP/2 connection to the outbound listener that acknowledges SETTINGS, answers PINGs and records GOAWAY codes. */
async function rawConnection (t: { teardown (fn: () => unknown): void }): Promise<Raw> {
  const socket = net.connect(outbound, '127.0.0.1')
  socket.on('error', () => {})
  t.teardown(() => { socket.destroy() })
  await once(socket, 'connect')
  const raw: Raw = { socket, goaways: [], closedAt: undefined }
  let buf = Buffer.alloc(0)
  socket.on('data', (c: Buffer) => {
    buf = Buffer.concat([buf, c])
    while (buf.length >= 9 && buf.length >= 9 + buf.readUIntBE(0, 3)) {
      const len = buf.readUIntBE(0, 3)
      if (buf[3] === 7) raw.goaways.push(buf.readUInt32BE(9 + 4))
      if (buf[3] === 4 && (buf[4] & 1) === 0) socket.write(frame(4, 1, 0))
      if (buf[3] === 6 && (buf[4] & 1) === 0) socket.write(frame(6, 1, 0, buf.subarray(9, 9 + len)))
      buf = buf.subarray(9 + len)
    }
  })
  socket.on('close', () => { raw.closedAt = Date.now() })
  socket.write(Buffer.concat([PREFACE, frame(4, 0, 0)]))
  return raw
}

t.test('HEADERS + RST_STREAM burst: that connection is closed quickly, another client keeps getting 200', async (t) => {
  const raw = await rawConnection(t)
  const { socket, goaways } = raw

  // Another client, on its own connection, asks all along.
  const other = http2.connect(`http://127.0.0.1:${outbound}`)
  other.on('error', () => {})
  t.teardown(() => { other.destroy() })
  await once(other, 'remoteSettings')
  const statuses: number[] = []
  let attacking = true
  const ask = (): Promise<number> => new Promise((resolve) => {
    if (other.destroyed || other.closed) { resolve(-1); return }
    const s = other.request({ ':method': 'GET', ':path': '/', ':authority': 'web' })
    let status = 0
    s.on('response', (h) => { status = Number(h[':status']) })
    s.on('error', () => {})
    s.resume()
    s.on('close', () => resolve(status))
  })
  const asking = (async () => { while (attacking && !other.destroyed) { statuses.push(await ask()); await sleep(5) } })()

  const started = Date.now()
  let id = 1
  let sent = 0
  // Up to 100,000 streams, in batches of 200, until the sidecar closes the connection.
  while (raw.closedAt === undefined && sent < 100_000 && Date.now() - started < 10_000) {
    const batch: Buffer[] = []
    for (let i = 0; i < 200; i++, id += 2, sent++) batch.push(frame(1, 0x4 | 0x1, id, HEADERS), frame(3, 0, id, CANCEL))
    // A sidecar that stopped reading leaves the write undrained: stop writing then, and see whether it closes.
    if (!socket.write(Buffer.concat(batch)) && await Promise.race([once(socket, 'drain').then(() => true, () => false), sleep(500).then(() => false)]) === false) break
    await new Promise((resolve) => setImmediate(resolve))
  }
  // Give a connection that is merely stuck (GOAWAY sent, socket kept) time to show itself.
  const until = Date.now() + 2000
  while (raw.closedAt === undefined && Date.now() < until) await sleep(20)
  await sleep(300)
  attacking = false
  await asking

  t.ok(raw.closedAt !== undefined, 'the attacking connection is closed')
  const took = (raw.closedAt ?? Date.now()) - started
  t.ok(took < 1000, `quickly (${took} ms, ${sent} streams sent)`)
  t.equal(goaways[0], ENHANCE_YOUR_CALM, `GOAWAY ENHANCE_YOUR_CALM (got ${goaways.join(', ')})`)
  t.ok(await counter('client', 'remora_h2_reset_floods_total', 'direction="outbound"') >= 1, 'counted')
  t.ok(statuses.length > 0, `the other client asked during the burst (${statuses.length} requests)`)
  t.same([...new Set(statuses)], [200], 'the other client got only 200s (no 502 upstream reset)')
  t.ok(appRequests <= 4 * BUDGET, `few of the cancelled streams reached the app (${appRequests})`)
})

t.test('a busy client that cancels more than the budget, but a minority of its streams, keeps its connection', async (t) => {
  const floods = await counter('client', 'remora_h2_reset_floods_total', 'direction="outbound"')
  const raw = await rawConnection(t)
  const fast = hpack([[':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'web']])
  // 600 streams in batches of 50, 3 in 10 cancelled at once: 180 cancels, over the budget of 100.
  let id = 1
  for (let batch = 0; batch < 12; batch++) {
    const frames: Buffer[] = []
    for (let i = 0; i < 50; i++, id += 2) {
      frames.push(frame(1, 0x4 | 0x1, id, fast))
      if (i % 10 < 3) frames.push(frame(3, 0, id, CANCEL))
    }
    raw.socket.write(Buffer.concat(frames))
    await sleep(100)
  }
  await sleep(500)
  t.equal(raw.closedAt, undefined, 'the connection stays open')
  t.same(raw.goaways, [], 'no GOAWAY')
  t.equal(await counter('client', 'remora_h2_reset_floods_total', 'direction="outbound"'), floods, 'not counted as a flood')
})
