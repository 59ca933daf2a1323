// Black-box, issue 18 defects 3 and 5: every HTTP/2 client connection is bounded. A connection with
// no stream is closed after the idle timeout; one HTTP/2 refused with GOAWAY (malformed frame) is
// found by an unanswered PING and closed; a long quiet stream is not cut; a connection opening more
// streams than SETTINGS_MAX_CONCURRENT_STREAMS gets REFUSED_STREAM for the excess while others are served.
import t from 'tap'
import http from 'node:http'
import http2, { type ClientHttp2Session } from 'node:http2'
import net from 'node:net'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { startMesh, freePort, pairSpec } from './harness/mesh.ts'
import { frame, hpack, PREFACE } from './harness/h2-frames.ts'


interface Frame { type: number, flags: number, stream: number, payload: Buffer }

/** A raw HTTP/2 client socket that records the frames the sidecar sends, and when it closes. */
class RawH2 {
  readonly socket: net.Socket
  readonly frames: Frame[] = []
  closedAt: number | undefined
  #buf = Buffer.alloc(0)
  constructor (port: number) {
    this.socket = net.connect(port, '127.0.0.1')
    this.socket.on('error', () => {})
    this.socket.on('data', (c: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, c])
      while (this.#buf.length >= 9) {
        const len = this.#buf.readUIntBE(0, 3)
        if (this.#buf.length < 9 + len) break
        const f = { type: this.#buf[3], flags: this.#buf[4], stream: this.#buf.readUInt32BE(5) & 0x7fffffff, payload: this.#buf.subarray(9, 9 + len) }
        this.#buf = this.#buf.subarray(9 + len)
        this.frames.push(f)
        // Settings are acknowledged (unless a test holds the ACK back); PINGs are answered only when asked.
        if (f.type === 4 && (f.flags & 1) === 0 && this.ackSettings) this.socket.write(frame(4, 1, 0))
        if (f.type === 6 && (f.flags & 1) === 0 && this.answerPings) this.socket.write(frame(6, 1, 0, f.payload))
      }
    })
    this.socket.on('close', () => { this.closedAt = Date.now() })
  }

  answerPings = false
  ackSettings = true
  async start (): Promise<void> {
    await once(this.socket, 'connect')
    this.socket.write(Buffer.concat([PREFACE, frame(4, 0, 0)]))
  }

  goaway (): Frame | undefined { return this.frames.find((f) => f.type === 7) }
  async closed (withinMs: number): Promise<boolean> {
    const until = Date.now() + withinMs
    while (this.closedAt === undefined && Date.now() < until) await sleep(25)
    return this.closedAt !== undefined
  }
}

// The app: `/hold?ms=` answers after that long, a byte every 200 ms meanwhile on `/trickle`.
let inApp = 0
let mostInApp = 0
const appPort = await freePort()
const app = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://app')
  const ms = Number(url.searchParams.get('ms') ?? 0)
  inApp++
  mostInApp = Math.max(mostInApp, inApp)
  res.once('close', () => { inApp-- })
  req.resume()
  setTimeout(() => { if (!res.destroyed) res.end('done') }, ms)
}).listen(appPort, '127.0.0.1')
await once(app, 'listening')
t.teardown(() => { app.closeAllConnections(); app.close() })

const IDLE_MS = 1500
const PING_MS = 400
const DRAIN_MS = 400
const mesh = await startMesh(t, pairSpec(appPort), {
  env: {
    REMORA_DOWNSTREAM_IDLE_TIMEOUT: `${IDLE_MS}ms`,
    REMORA_DOWNSTREAM_PING_INTERVAL: `${PING_MS}ms`,
    REMORA_DRAIN_TIMEOUT: `${DRAIN_MS}ms`,
    REMORA_MAX_CONCURRENT_STREAMS: '20',
  },
})
const outbound = mesh.sidecar('client').ports.outbound
const inbound = mesh.sidecar('web').ports.inbound

async function connect (t: { teardown (fn: () => unknown): void }, port = outbound): Promise<ClientHttp2Session> {
  const session = http2.connect(`http://127.0.0.1:${port}`)
  session.on('error', () => {})
  t.teardown(() => { session.destroy() })
  await once(session, 'remoteSettings')
  return session
}

function get (session: ClientHttp2Session, path: string): Promise<{ status: number, body: string, rstCode: number }> {
  return new Promise((resolve) => {
    const stream = session.request({ ':method': 'GET', ':path': path, ':authority': 'web' })
    let status = 0
    let body = ''
    stream.on('response', (h) => { status = Number(h[':status']) })
    stream.setEncoding('utf8')
    stream.on('data', (c: string) => { body += c })
    stream.on('error', () => {})
    stream.on('close', () => resolve({ status, body, rstCode: stream.rstCode ?? 0 }))
  })
}

async function timeouts (sidecar: 'client' | 'web', kind: string): Promise<number> {
  const text = await (await fetch(`${mesh.sidecar(sidecar).adminUrl}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith('remora_downstream_timeouts_total{') && l.includes(`kind="${kind}"`))
  return line === undefined ? 0 : Number(line.split(' ').pop())
}

t.test('preface, then silence: closed after the idle timeout (outbound and inbound listeners)', async (t) => {
  for (const port of [outbound, inbound]) {
    const raw = new RawH2(port)
    t.teardown(() => { raw.socket.destroy() })
    raw.answerPings = true // a live client: only the idle timeout may end it
    await raw.start()
    const opened = Date.now()
    t.ok(await raw.closed(IDLE_MS + DRAIN_MS + 3000), `port ${port}: the silent connection is closed`)
    const waited = (raw.closedAt ?? Date.now()) - opened
    t.ok(waited >= IDLE_MS - 100, `not before the idle timeout (${waited} ms)`)
    t.equal(raw.goaway()?.payload.readUInt32BE(4), 0, 'GOAWAY NO_ERROR first')
  }
  t.ok(await timeouts('client', 'h2-idle') >= 1, 'counted as h2-idle')
})

t.test('a silent client that answers no PING is closed after ping interval + drain timeout', async (t) => {
  const raw = new RawH2(outbound)
  t.teardown(() => { raw.socket.destroy() })
  await raw.start()
  t.ok(await raw.closed(PING_MS + DRAIN_MS + 3000), 'closed')
  t.ok(raw.frames.some((f) => f.type === 6), 'it was sent a PING')
})

t.test('a malformed frame: GOAWAY, then the socket is closed (even with a stream open)', async (t) => {
  const before = await timeouts('client', 'h2-ping')
  const raw = new RawH2(outbound)
  t.teardown(() => { raw.socket.destroy() })
  raw.answerPings = true
  await raw.start()
  // A stream the app holds for 10 s, so the idle timeout cannot be what closes the connection.
  raw.socket.write(frame(1, 0x4 | 0x1, 1, hpack([[':method', 'GET'], [':scheme', 'http'], [':path', '/hold?ms=10000'], [':authority', 'web']])))
  await sleep(200)
  // WINDOW_UPDATE must be 4 bytes: FRAME_SIZE_ERROR, a connection error.
  const sent = Date.now()
  raw.socket.write(frame(8, 0, 0, Buffer.from([1, 2, 3])))
  t.ok(await raw.closed(PING_MS + 2 * DRAIN_MS + 3000), 'closed')
  t.equal(raw.goaway()?.payload.readUInt32BE(4), 6, 'GOAWAY FRAME_SIZE_ERROR')
  t.ok((raw.closedAt ?? Date.now()) - sent < IDLE_MS + PING_MS + 2 * DRAIN_MS + 1000, `closed ${(raw.closedAt ?? 0) - sent} ms after the bad frame`)
  t.ok(await timeouts('client', 'h2-ping') > before, 'counted as h2-ping')
})

t.test('a long quiet stream is not cut by the idle timeout or the PING probe', async (t) => {
  const session = await connect(t)
  const res = await get(session, `/hold?ms=${IDLE_MS + PING_MS + DRAIN_MS + 1500}`)
  t.equal(res.status, 200)
  t.equal(res.body, 'done')
  t.equal(res.rstCode, 0)
})

const request = (id: number, path: string): Buffer => frame(1, 0x4 | 0x1, id, hpack([[':method', 'GET'], [':scheme', 'http'], [':path', path], [':authority', 'web']]))

t.test('streams beyond SETTINGS_MAX_CONCURRENT_STREAMS are refused with REFUSED_STREAM; the first complete; others are served', async (t) => {
  const raw = new RawH2(outbound)
  t.teardown(() => { raw.socket.destroy() })
  raw.answerPings = true
  // A client that opens its streams before it has seen the server's SETTINGS (as most do at start).
  raw.ackSettings = false
  await raw.start()
  mostInApp = inApp
  const ids = Array.from({ length: 30 }, (_, i) => 1 + 2 * i)
  raw.socket.write(Buffer.concat(ids.map((id) => request(id, '/hold?ms=1500'))))
  while (!raw.frames.some((f) => f.type === 4 && (f.flags & 1) === 0)) await sleep(10)
  const settings = raw.frames.find((f) => f.type === 4 && (f.flags & 1) === 0)?.payload ?? Buffer.alloc(0)
  let advertised: number | undefined
  for (let i = 0; i + 6 <= settings.length; i += 6) if (settings.readUInt16BE(i) === 3) advertised = settings.readUInt32BE(i + 2)
  t.equal(advertised, 20, 'SETTINGS_MAX_CONCURRENT_STREAMS is REMORA_MAX_CONCURRENT_STREAMS')
  // Meanwhile another client, on its own connection, is served at once.
  await sleep(300)
  const other = await connect(t)
  const started = Date.now()
  const quick = await get(other, '/hold?ms=0')
  t.equal(quick.status, 200, 'another connection is served while the first holds its 20 streams')
  t.ok(Date.now() - started < 1000, `at once (${Date.now() - started} ms)`)
  raw.socket.write(frame(4, 1, 0))
  const until = Date.now() + 8000
  const ended = (id: number): boolean => raw.frames.some((f) => f.stream === id && (f.type === 3 || (f.flags & 1) === 1))
  while (!ids.every(ended) && Date.now() < until) await sleep(25)
  const refused = ids.filter((id) => raw.frames.some((f) => f.stream === id && f.type === 3 && f.payload.readUInt32BE(0) === 7))
  const completed = ids.filter((id) => raw.frames.some((f) => f.stream === id && f.type === 1) && raw.frames.some((f) => f.stream === id && (f.flags & 1) === 1 && f.type !== 3))
  t.same(refused, ids.slice(20), 'the 10 beyond the limit get RST_STREAM REFUSED_STREAM')
  t.same(completed, ids.slice(0, 20), 'the first 20 complete')
  t.ok(mostInApp <= 21, `the app never held more than the limit (+ the other client) at once (${mostInApp})`)
  t.equal(raw.closedAt, undefined, 'the connection stays up')
  // Within the limit again, the same connection is served.
  raw.socket.write(request(61, '/hold?ms=0'))
  while (!ended(61) && Date.now() < until) await sleep(25)
  t.ok(raw.frames.some((f) => f.stream === 61 && f.type === 1), 'a later stream on the same connection is served')
})

t.test('a client that acknowledged the limit and still exceeds it loses its own connection only', async (t) => {
  const raw = new RawH2(outbound)
  t.teardown(() => { raw.socket.destroy() })
  raw.answerPings = true
  await raw.start()
  while (!raw.frames.some((f) => f.type === 4 && (f.flags & 1) === 1)) await sleep(10)
  await sleep(50)
  const ids = Array.from({ length: 30 }, (_, i) => 1 + 2 * i)
  raw.socket.write(Buffer.concat(ids.map((id) => request(id, '/hold?ms=1000'))))
  const other = await connect(t)
  t.equal((await get(other, '/hold?ms=0')).status, 200, 'another connection is served')
  t.ok(await raw.closed(3000), 'the offending connection is closed')
  // nghttp2 takes a stream beyond an acknowledged limit as a PROTOCOL_ERROR, on which node ends the
  // whole connection (RST_STREAM and GOAWAY INTERNAL_ERROR): harsher than REFUSED_STREAM, but only for the offender.
  t.not(raw.goaway()?.payload.readUInt32BE(4) ?? 0, 0, 'GOAWAY with an error')
})

t.test('control-frame floods (PING, SETTINGS, empty DATA) without reading the answers: that connection is closed, others are served', async (t) => {
  for (const [what, unit] of [
    ['PING', frame(6, 0, 0, Buffer.alloc(8))],
    ['SETTINGS', frame(4, 0, 0)],
  ] as const) {
    const raw = new RawH2(outbound)
    t.teardown(() => { raw.socket.destroy() })
    await raw.start()
    // The flooder never reads: the sidecar's ACKs pile up until nghttp2's outbound limit ends it.
    raw.socket.pause()
    const burst = Buffer.concat(Array.from({ length: 2_000 }, () => unit))
    for (let i = 0; i < 50 && !raw.socket.destroyed; i++) raw.socket.write(burst)
    const other = await connect(t)
    t.equal((await get(other, '/hold?ms=0')).status, 200, `${what} flood: another client is served meanwhile`)
    raw.socket.resume()
    t.ok(await raw.closed(5_000), `${what} flood: the flooding connection is closed`)
    other.close()
  }
  // Empty DATA frames on an open stream: each costs the sidecar a read and a callback, none a byte.
  const raw = new RawH2(outbound)
  t.teardown(() => { raw.socket.destroy() })
  await raw.start()
  raw.socket.write(frame(1, 0x4, 1, hpack([[':method', 'POST'], [':scheme', 'http'], [':path', '/hold?ms=0'], [':authority', 'web']])))
  const empty = Buffer.concat(Array.from({ length: 2_000 }, () => frame(0, 0, 1)))
  for (let i = 0; i < 50 && !raw.socket.destroyed; i++) raw.socket.write(empty)
  const other = await connect(t)
  t.equal((await get(other, '/hold?ms=0')).status, 200, 'empty DATA flood: another client is served meanwhile')
  t.ok(await raw.closed(5_000), 'empty DATA flood: the flooding connection is closed')
})
