// Issue 18, defect 1: slow request bodies must not take an app offline. Over raw sockets and real
// HTTP/2 clients against two real sidecars: a body that falls behind REMORA_REQUEST_BODY_TIMEOUT /
// REMORA_REQUEST_BODY_MIN_RATE is answered 408 and cancelled on both listeners and protocols, a body
// that keeps up and a slow gRPC stream are not, and one caller's slow bodies filling an app port's
// slots and queue no longer shed another caller.
import t, { type Test } from 'tap'
import { once } from 'node:events'
import http from 'node:http'
import http2 from 'node:http2'
import net from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { eventually, pairSpec, startMesh, type SidecarProcess } from './harness/mesh.ts'
import { startApp } from './harness/http.ts'
import { metric } from './harness/metrics.ts'

const BODY_TIMEOUT_MS = 1_000
const MIN_RATE = 1_000

interface Seen { path: string, bytes: number, ended: boolean, aborted: boolean }
const seen = new Map<string, Seen>()
const app = await startApp(t, (req, res) => {
  const s: Seen = { path: req.url ?? '', bytes: 0, ended: false, aborted: false }
  seen.set(s.path, s)
  req.on('data', (c: Buffer) => { s.bytes += c.length })
  req.on('error', () => {})
  req.on('close', () => { if (!s.ended) s.aborted = true })
  req.on('end', () => {
    s.ended = true
    res.end(`got ${s.bytes}`)
  })
})
const spec = pairSpec(app.port)
// Small limits on web's app port, so one caller can fill them (the attack took 2,048 connections).
spec.workloads.web.inbound = { maxConcurrent: 2, maxQueued: 2 }
const mesh = await startMesh(t, spec, { env: { REMORA_REQUEST_BODY_TIMEOUT: `${BODY_TIMEOUT_MS}ms`, REMORA_REQUEST_BODY_MIN_RATE: String(MIN_RATE) } })
const client = mesh.sidecar('client')
const web = mesh.sidecar('web')
const listeners = [
  { direction: 'outbound', port: client.ports.outbound, sidecar: client },
  { direction: 'inbound', port: web.ports.inbound, sidecar: web },
] as const

/** Waits for `p`, at most `ms` (a generous bound: without the protection it would wait for ever). */
async function within<T> (p: Promise<T>, ms = BODY_TIMEOUT_MS * 15): Promise<T | undefined> {
  return await Promise.race([p, sleep(ms).then(() => undefined)])
}

const timeouts = async (s: SidecarProcess, direction: string): Promise<number> => await metric(s.adminUrl, 'remora_downstream_timeouts_total', { direction, kind: 'body' })
async function nothingInFlight (t: Test, what: string): Promise<void> {
  for (const s of [client, web]) {
    let last = -1
    try { await eventually(async () => (last = await metric(s.adminUrl, 'remora_requests_in_flight')) === 0, 10_000, 'nothing in flight') } catch { /* asserted below */ }
    t.equal(last, 0, `${what}: nothing left in flight on ${s.name}`)
  }
}

/** A raw HTTP/1.1 upload that sends its head and `first` body bytes, then one byte per `gapMs` until closed. */
async function trickle (port: number, path: string, length: number, first: number, gapMs: number, localAddress = '127.0.0.1'): Promise<{ answer: string, closed: Promise<void>, stop: () => void }> {
  const socket = net.connect({ port, host: '127.0.0.1', localAddress })
  let answer = ''
  socket.on('data', (c: Buffer) => { answer += c.toString('latin1') })
  socket.on('error', () => {})
  const closed = once(socket, 'close').then(() => {})
  await once(socket, 'connect')
  socket.write(`POST ${path} HTTP/1.1\r\nHost: web\r\nContent-Length: ${length}\r\n\r\n${'x'.repeat(first)}`)
  let stopped = false
  void (async () => {
    while (!stopped && !socket.destroyed) {
      await Promise.race([sleep(gapMs), closed])
      if (!socket.destroyed && !stopped) socket.write('x')
    }
  })()
  const result = { answer: '', closed, stop: () => { stopped = true; socket.destroy() } }
  Object.defineProperty(result, 'answer', { get: () => answer })
  return result
}

t.test('defect 1: an HTTP/1.1 body a byte at a time is answered 408 and cancelled, on both listeners', async (t) => {
  for (const l of listeners) {
    const before = await timeouts(l.sidecar, l.direction)
    const path = `/slow-h1-${l.direction}`
    const up = await trickle(l.port, path, 1_048_576, 10, 200)
    t.teardown(up.stop)
    await within(up.closed)
    t.match(up.answer, /^HTTP\/1\.1 408 [^]*remora-proxy-error: request body timeout/i, `${l.direction}: answered 408 with the reason`)
    t.match(up.answer, /connection: close/i, `${l.direction}: and the connection closed`)
    t.equal(await timeouts(l.sidecar, l.direction), before + 1, `${l.direction}: counted as kind="body"`)
    await eventually(() => seen.get(path)?.aborted === true, 5_000, 'the app sees the upload cut')
    t.notOk(seen.get(path)?.ended, `${l.direction}: the app never took the cut-off upload for a whole one`)
    // The line comes through the sidecar's stdout, maybe after the answer: wait for it.
    const lineOf = (): Record<string, unknown> | undefined => l.sidecar.logs().find((r) => r.access === l.direction && r.path === path)
    try { await eventually(() => lineOf() !== undefined, 5_000, 'the access line') } catch { /* asserted next */ }
    const line = lineOf()
    t.match(line, { status: 408, error: 'request body timeout' }, `${l.direction}: the access line says why`)
  }
  await nothingInFlight(t, 'after slow HTTP/1.1 bodies')
})

t.test('defect 1: an HTTP/2 body that falls behind is answered 408 and its stream closed, on both listeners', async (t) => {
  for (const l of listeners) {
    const before = await timeouts(l.sidecar, l.direction)
    const session = http2.connect(`http://127.0.0.1:${l.port}`)
    session.on('error', () => {})
    t.teardown(() => { session.destroy() })
    const path = `/slow-h2-${l.direction}`
    const stream = session.request({ ':method': 'POST', ':path': path, ':authority': 'web', 'content-length': '1048576' })
    stream.on('error', () => {})
    stream.write('x'.repeat(10))
    const drip = setInterval(() => { if (!stream.closed) stream.write('x') }, 200)
    t.teardown(() => clearInterval(drip))
    const [headers] = (await within(once(stream, 'response')) ?? [{}]) as [http2.IncomingHttpHeaders]
    stream.resume()
    await within(once(stream, 'close'))
    clearInterval(drip)
    t.equal(headers[':status'], 408, `${l.direction}: answered 408`)
    t.equal(headers['remora-proxy-error'], 'request body timeout', `${l.direction}: with the reason`)
    t.equal(await timeouts(l.sidecar, l.direction), before + 1, `${l.direction}: counted as kind="body"`)
    await eventually(() => seen.get(path)?.aborted === true, 5_000, 'the app sees the upload cut')
    session.close()
  }
  await nothingInFlight(t, 'after slow HTTP/2 bodies')
})

t.test('defect 1: a body that keeps up with the minimum rate, and a slow gRPC stream, go through whole', async (t) => {
  for (const l of listeners) {
    // 4,000 bytes at twice the minimum rate over twice the initial allowance.
    const path = `/steady-${l.direction}`
    const res = await new Promise<{ status: number, body: string }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: l.port, method: 'POST', path, headers: { host: 'web', 'content-length': '4000' }, agent: false }, (r) => {
        let body = ''
        r.on('data', (c: Buffer) => { body += c.toString() })
        r.on('end', () => resolve({ status: r.statusCode ?? 0, body }))
      })
      req.on('error', reject)
      void (async () => {
        for (let i = 0; i < 8; i++) { req.write('y'.repeat(500)); await sleep(250) }
        req.end()
      })()
    })
    t.same(res, { status: 200, body: 'got 4000' }, `${l.direction}: a steady upload is carried whole`)

    // gRPC is exempt: a client stream may rightly send a message now and then.
    const session = http2.connect(`http://127.0.0.1:${l.port}`)
    session.on('error', () => {})
    t.teardown(() => { session.destroy() })
    const stream = session.request({ ':method': 'POST', ':path': `/grpc-${l.direction}`, ':authority': 'web', 'content-type': 'application/grpc', te: 'trailers' })
    for (let i = 0; i < 6; i++) { stream.write(Buffer.from([0, 0, 0, 0, 1, 0x7a])); await sleep(BODY_TIMEOUT_MS / 2) }
    stream.end()
    const [headers] = await once(stream, 'response') as [http2.IncomingHttpHeaders]
    stream.resume()
    await once(stream, 'close')
    t.equal(headers[':status'], 200, `${l.direction}: a slow gRPC stream is not cut`)
    session.close()
  }
})

t.test("defect 1 (fairness): one caller's slow bodies filling an app port's slots and queue do not shed another caller", async (t) => {
  // Caller A (127.0.0.1) takes both slots and both queue places with slow uploads on the inbound listener.
  const slow = await Promise.all([1, 2, 3, 4].map(async (i) => await trickle(web.ports.inbound, `/hog-${i}`, 1_048_576, 10, 200)))
  t.teardown(() => { for (const s of slow) s.stop() })
  await eventually(() => seen.has('/hog-1') && seen.has('/hog-2'), 5_000, 'the first two reach the app')
  // Caller B (127.0.0.2), a normal request: it used to get 503 overloaded at once.
  const status = await within(new Promise<{ status: number, reason: string | undefined }>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: web.ports.inbound, localAddress: '127.0.0.2', method: 'GET', path: '/other-caller', headers: { host: 'web' }, agent: false }, (r) => {
      r.resume()
      r.on('end', () => resolve({ status: r.statusCode ?? 0, reason: r.headers['remora-proxy-error'] as string | undefined }))
    })
    req.on('error', reject)
    req.end()
  }))
  t.same(status, { status: 200, reason: undefined }, 'the other caller is answered by the app')
  t.ok(seen.has('/other-caller'), 'and the app saw it')
  // The hog's newest waiter gave up its queue place.
  await eventually(() => slow[3].answer !== '', 5_000, "the hog's newest waiter is answered")
  t.match(slow[3].answer, /^HTTP\/1\.1 503 [^]*remora-proxy-error: overloaded/i, "the hog's newest waiter was shed instead")
  for (const s of slow) s.stop()
  await nothingInFlight(t, 'after the hog')
})
