// Black-box: the server-side sidecar speaks to the app in the app's own protocol, whatever the caller
// spoke. Every caller {HTTP/1.1 (undici), h2c prior knowledge (node:http2), gRPC (grpc-js)} reaches
// every app {HTTP/1.1 (node:http), h2c only (node:http2)} through two sidecars, in plaintext and with
// mTLS, with the app port declared as a plain number (protocol auto: detected once, remembered).
import t, { type Test } from 'tap'
import http from 'node:http'
import http2, { type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import net from 'node:net'
import { Readable } from 'node:stream'
import * as grpc from '@grpc/grpc-js'
import { request } from 'undici'
import { eventually, freePort, startMesh, type MeshSpec, type SidecarProcess } from '../harness/mesh.ts'
import { startSecureMesh } from '../harness/control.ts'
import { echoClient, type EchoClient } from '../harness/grpc-echo.ts'
import { probeAppProtocol } from '../../src/inbound/app-protocol.ts'

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')
const CLIENT_ID = 'spiffe://cluster.local/ns/test/sa/client'

// --- A minimal gRPC Echo/Unary over both app protocols (protobuf field 1, a string, each way) ---

function varint (n: number): Buffer {
  const out: number[] = []
  while (n > 0x7f) { out.push((n & 0x7f) | 0x80); n >>>= 7 }
  out.push(n)
  return Buffer.from(out)
}

/** The `message` (field 1) of an EchoRequest inside one gRPC length-prefixed frame. */
function grpcRequestMessage (frame: Buffer): string {
  const msg = frame.subarray(5, 5 + frame.readUInt32BE(1))
  let i = 0
  const read = (): number => {
    let n = 0
    let shift = 0
    for (;;) {
      const b = msg[i++]
      n |= (b & 0x7f) << shift
      if ((b & 0x80) === 0) return n
      shift += 7
    }
  }
  while (i < msg.length) {
    const key = read()
    if ((key & 7) === 2) {
      const len = read()
      if (key >> 3 === 1) return msg.subarray(i, i + len).toString()
      i += len
    } else if ((key & 7) === 0) read()
    else throw new Error(`unexpected wire type ${key & 7}`)
  }
  return ''
}

/** An EchoReply with `message`, framed. */
function grpcReplyFrame (message: string): Buffer {
  const text = Buffer.from(message)
  const msg = Buffer.concat([Buffer.from([0x0a]), varint(text.length), text])
  const head = Buffer.alloc(5)
  head.writeUInt32BE(msg.length, 1)
  return Buffer.concat([head, msg])
}

// --- The apps ---

/** Connections that opened with the HTTP/2 preface (the sidecar's protocol probe), per HTTP/1.1 app. */
const probes = new Map<http.Server, number>()

/** HTTP/1.1 app: echoes the body; says what it saw in headers; the body's SHA-256 in a chunked trailer. */
function h1Handler (req: http.IncomingMessage, res: http.ServerResponse): void {
  const chunks: Buffer[] = []
  req.on('data', (c: Buffer) => chunks.push(c))
  req.on('end', () => {
    const body = Buffer.concat(chunks)
    if (String(req.headers['content-type']).startsWith('application/grpc')) {
      res.writeHead(200, { 'content-type': 'application/grpc', trailer: 'grpc-status, grpc-message', 'x-app-te': String(req.headers.te ?? 'none') })
      res.addTrailers({ 'grpc-status': '0', 'grpc-message': 'OK' })
      res.end(grpcReplyFrame(`HTTP/${req.httpVersion} app: ${grpcRequestMessage(body)}`))
      return
    }
    res.writeHead(200, {
      'content-type': 'application/octet-stream',
      'x-app-proto': `HTTP/${req.httpVersion}`,
      'x-app-method': req.method ?? '',
      'x-app-body': req.headers['content-length'] !== undefined ? `length ${req.headers['content-length']}` : req.headers['transfer-encoding'] !== undefined ? 'chunked' : 'none',
      'x-app-client-id': String(req.headers['remora-client-id'] ?? 'none'),
      'x-app-request-trailers': Object.keys(req.trailers).join(',') || 'none',
      // Announced trailers make node answer chunked, the only way HTTP/1.1 carries trailers.
      ...(req.method === 'HEAD' ? {} : { trailer: 'x-app-sha256' }),
    })
    if (req.method === 'HEAD') { res.end(); return }
    res.addTrailers({ 'x-app-sha256': sha256(body) })
    res.end(body)
  })
}

/** h2c-only app: the same echo over HTTP/2, the SHA-256 in h2 trailers. */
function h2Handler (stream: http2.ServerHttp2Stream, headers: IncomingHttpHeaders): void {
  stream.on('error', () => {})
  const chunks: Buffer[] = []
  let requestTrailers: IncomingHttpHeaders = {}
  stream.on('trailers', (h: IncomingHttpHeaders) => { requestTrailers = h })
  stream.on('data', (c: Buffer) => chunks.push(c))
  stream.on('end', () => {
    const body = Buffer.concat(chunks)
    if (String(headers['content-type']).startsWith('application/grpc')) {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'x-app-te': String(headers.te ?? 'none') }, { waitForTrailers: true })
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'OK' }))
      stream.end(grpcReplyFrame(`HTTP/2 app: ${grpcRequestMessage(body)}`))
      return
    }
    const head = headers[':method'] === 'HEAD'
    stream.respond({
      ':status': 200,
      'content-type': 'application/octet-stream',
      'x-app-proto': 'HTTP/2',
      'x-app-method': headers[':method'] ?? '',
      'x-app-body': headers['content-length'] !== undefined ? `length ${headers['content-length']}` : body.length > 0 ? 'streamed' : 'none',
      'x-app-client-id': String(headers['remora-client-id'] ?? 'none'),
    }, { endStream: head, waitForTrailers: !head })
    if (head) return
    const received = Object.entries(requestTrailers).filter(([k]) => k.startsWith('x-')).map(([k, v]) => `${k}=${String(v)}`).join(',') || 'none'
    stream.once('wantTrailers', () => stream.sendTrailers({ 'x-app-sha256': sha256(body), 'x-app-request-trailers': received }))
    stream.end(body)
  })
}

async function startH1App (port?: number): Promise<{ port: number, server: http.Server }> {
  const p = port ?? await freePort()
  const server = http.createServer(h1Handler)
  probes.set(server, 0)
  server.on('clientError', (err: Error & { rawPacket?: Buffer }, socket) => {
    if (err.rawPacket?.toString('latin1').startsWith('PRI * HTTP/2.0') === true) probes.set(server, (probes.get(server) ?? 0) + 1)
    socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n')
  })
  server.listen(p, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return { port: p, server }
}

async function startH2App (port?: number): Promise<{ port: number, server: http2.Http2Server, sessions: Set<http2.ServerHttp2Session> }> {
  const p = port ?? await freePort()
  const sessions = new Set<http2.ServerHttp2Session>()
  const server = http2.createServer().on('stream', h2Handler)
  server.on('session', (s) => { sessions.add(s); s.once('close', () => sessions.delete(s)) })
  server.listen(p, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { for (const s of sessions) s.destroy(); server.close() })
  return { port: p, server, sessions }
}

const h1App = await startH1App()
const h2App = await startH2App()
const declaredApp = await startH1App()

// --- The callers ---

interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
  trailers: Record<string, string | string[] | undefined>
}

type BodyKind = 'none' | 'empty' | 'length' | 'stream'
interface Case { method: string, body: BodyKind }

const CASES: Case[] = [
  { method: 'GET', body: 'none' },
  { method: 'HEAD', body: 'none' },
  { method: 'DELETE', body: 'none' },
  { method: 'OPTIONS', body: 'none' },
  { method: 'POST', body: 'empty' },
  { method: 'POST', body: 'length' },
  { method: 'POST', body: 'stream' },
  { method: 'PUT', body: 'length' },
]

/** The bytes a case sends; a streamed body goes in several writes, with no length announced. */
function payload (kind: BodyKind): Buffer[] {
  switch (kind) {
    case 'none': case 'empty': return []
    case 'length': return [randomBytes(100 * 1024 + 7)]
    case 'stream': return [randomBytes(20_000), randomBytes(1), randomBytes(70_000)]
  }
}

async function viaHttp1 (outbound: number, authority: string, c: Case, parts: Buffer[]): Promise<Reply> {
  const body = c.body === 'none' ? undefined : c.body === 'stream' ? Readable.from(parts) : Buffer.concat(parts)
  const res = await request(`http://127.0.0.1:${outbound}/echo`, { method: c.method as 'GET', headers: { host: authority }, body })
  const bytes = Buffer.from(await res.body.arrayBuffer())
  return { status: res.statusCode, headers: res.headers, body: bytes, trailers: res.trailers }
}

function viaH2 (session: ClientHttp2Session, authority: string, c: Case, parts: Buffer[], requestTrailers?: OutgoingHttpHeaders): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: OutgoingHttpHeaders = { ':method': c.method, ':path': '/echo', ':authority': authority }
    if (c.body === 'length') headers['content-length'] = String(Buffer.concat(parts).length)
    const open = c.body === 'length' || c.body === 'stream'
    const stream = session.request(headers, { endStream: !open, waitForTrailers: requestTrailers !== undefined })
    const reply: Reply = { status: 0, headers: {}, body: Buffer.alloc(0), trailers: {} }
    const chunks: Buffer[] = []
    stream.on('response', (h) => { reply.status = Number(h[':status']); reply.headers = h })
    stream.on('data', (c: Buffer) => chunks.push(c))
    stream.on('trailers', (h) => { reply.trailers = h })
    stream.on('error', reject)
    stream.on('close', () => { reply.body = Buffer.concat(chunks); resolve(reply) })
    if (requestTrailers !== undefined) stream.once('wantTrailers', () => stream.sendTrailers(requestTrailers))
    if (open) {
      for (const p of parts) stream.write(p)
      stream.end()
    }
  })
}

/** A unary gRPC call; also what the app told in its response headers (initial metadata). */
function grpcUnary (client: EchoClient, message: string): Promise<{ err: grpc.ServiceError | null, reply?: { message: string }, metadata?: grpc.Metadata }> {
  return new Promise((resolve) => {
    let metadata: grpc.Metadata | undefined
    const call = client.unary({ message }, new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err, reply) => resolve({ err, reply, metadata }))
    call.on('metadata', (md: grpc.Metadata) => { metadata = md })
  })
}

// --- The matrix ---

function spec (): MeshSpec {
  return {
    workloads: {
      client: { appPorts: [1] },
      server: { appPorts: [h1App.port, h2App.port, { port: declaredApp.port, protocol: 'http1' }] },
    },
    services: [
      { name: 'h1app', port: 80, endpoints: [{ workload: 'server', targetPort: h1App.port }] },
      { name: 'h2app', port: 80, endpoints: [{ workload: 'server', targetPort: h2App.port }] },
      { name: 'declared', port: 80, endpoints: [{ workload: 'server', targetPort: declaredApp.port }] },
    ],
  }
}

const APPS = [
  { authority: 'h1app', proto: 'HTTP/1.1', port: h1App.port, streamed: 'chunked' },
  { authority: 'h2app', proto: 'HTTP/2', port: h2App.port, streamed: 'streamed' },
] as const

type Tap = Test

function checkReply (t: Tap, what: string, app: typeof APPS[number], c: Case, parts: Buffer[], r: Reply, mtls: boolean): void {
  const sent = Buffer.concat(parts)
  t.equal(r.status, 200, `${what}: 200 (${r.status === 200 ? 'ok' : r.body.toString()})`)
  t.equal(r.headers['x-app-proto'], app.proto, `${what}: the app answered in its own protocol`)
  t.equal(r.headers['x-app-method'], c.method, `${what}: the app saw ${c.method}`)
  t.equal(r.headers['x-app-client-id'], mtls ? CLIENT_ID : 'none', `${what}: the app learns the caller from mTLS only`)
  if (c.body === 'length') t.equal(r.headers['x-app-body'], `length ${sent.length}`, `${what}: the app saw the Content-Length`)
  if (c.body === 'stream') t.equal(r.headers['x-app-body'], app.streamed, `${what}: the app got the body streamed (${app.streamed})`)
  if (c.method === 'HEAD') {
    t.equal(r.body.length, 0, `${what}: no body`)
    return
  }
  t.ok(r.body.equals(sent), `${what}: the ${sent.length} bytes came back exactly`)
  t.equal(r.trailers['x-app-sha256'], sha256(sent), `${what}: the app's response trailer arrived`)
}

/** `h1ProbesBefore`: the HTTP/1.1 app's probe count before this mesh started (sidecars probe `auto` ports as they start). */
async function matrix (t: Tap, client: SidecarProcess, server: SidecarProcess, mtls: boolean, h1ProbesBefore: number): Promise<void> {
  const outbound = client.ports.outbound
  const session = http2.connect(`http://127.0.0.1:${outbound}`)
  session.on('error', () => {})
  t.teardown(() => { session.destroy() })
  await once(session, 'connect')

  // The first requests to each port arrive together, maybe while the probe the sidecar started with
  // is still out: they all use its answer, and none is sent in the wrong protocol.
  const burst = await Promise.all(APPS.flatMap((app) => Array.from({ length: 5 }, () => viaH2(session, app.authority, { method: 'GET', body: 'none' }, []))))
  t.same(burst.map((r) => r.status), burst.map(() => 200), 'a burst of first requests to both apps all succeed')

  for (const app of APPS) {
    await t.test(`HTTP/1.1 caller → ${app.proto} app`, async (t) => {
      for (const c of CASES) {
        const parts = payload(c.body)
        checkReply(t, `${c.method} ${c.body}`, app, c, parts, await viaHttp1(outbound, app.authority, c, parts), mtls)
      }
    })
    await t.test(`h2c caller → ${app.proto} app`, async (t) => {
      for (const c of CASES) {
        const parts = payload(c.body)
        checkReply(t, `${c.method} ${c.body}`, app, c, parts, await viaH2(session, app.authority, c, parts), mtls)
      }
    })
    await t.test(`gRPC caller → ${app.proto} app`, async (t) => {
      const grpcClient = echoClient(t, client, app.authority)
      const r = await grpcUnary(grpcClient, 'hello over gRPC')
      t.equal(r.err, null, `status OK (${r.err?.code ?? ''} ${r.err?.details ?? ''})`)
      t.equal(r.reply?.message, `${app.proto} app: hello over gRPC`, 'the reply the app made from the request')
      t.same(r.metadata?.get('x-app-te'), ['trailers'], 'the app saw TE: trailers (it may answer with trailers)')
    })
  }

  await t.test('a declared protocol wins: no probe', async (t) => {
    const before = probes.get(declaredApp.server)
    const r = await viaH2(session, 'declared', { method: 'POST', body: 'length' }, [Buffer.from('declared http1')])
    t.equal(r.status, 200)
    t.equal(r.headers['x-app-proto'], 'HTTP/1.1')
    t.equal(r.body.toString(), 'declared http1')
    t.equal(probes.get(declaredApp.server), before, 'the app on the declared port was never probed')
  })

  await t.test('detection: once per auto port, logged with its evidence', async (t) => {
    t.equal((probes.get(h1App.server) ?? 0) - h1ProbesBefore, 1, 'the HTTP/1.1 app was probed once for all of these requests')
    const detected = (port: number): Array<Record<string, unknown>> => server.logs().filter((l) => l.msg === 'app protocol detected' && l.port === port)
    await eventually(() => detected(h1App.port).length > 0 && detected(h2App.port).length > 0, 5_000, 'detection log lines')
    t.match(detected(h1App.port), [{ level: 'info', protocol: 'http1', evidence: /HTTP\/1\.1 400/ }], 'the HTTP/1.1 app: one line, and why')
    t.equal(detected(h1App.port).length, 1)
    t.match(detected(h2App.port), [{ level: 'info', protocol: 'http2', evidence: /SETTINGS/ }], 'the h2c app: one line, and why')
    t.equal(detected(h2App.port).length, 1)
    t.equal(detected(declaredApp.port).length, 0, 'nothing detected for the declared port')
  })
}

t.test('plaintext: every caller × every app, through two sidecars', async (t) => {
  const before = probes.get(h1App.server) ?? 0
  const mesh = await startMesh(t, spec())
  await matrix(t, mesh.sidecar('client'), mesh.sidecar('server'), false, before)
})

t.test('mTLS: every caller × every app, through two sidecars', async (t) => {
  const before = probes.get(h1App.server) ?? 0
  const { mesh } = await startSecureMesh(t, spec())
  await matrix(t, mesh.sidecar('client'), mesh.sidecar('server'), true, before)
})

t.test('what HTTP/1.1 cannot carry, an app that starts after its sidecar, an app that changes protocol', async (t) => {
  const swapPort = await freePort()
  const first = await startH2App(swapPort)
  // Nothing listens here yet: the probe the sidecar starts with is refused, and nothing is remembered.
  const latePort = await freePort()
  const mesh = await startMesh(t, {
    workloads: { client: { appPorts: [1] }, server: { appPorts: [h1App.port, latePort, swapPort] } },
    services: [
      { name: 'h1app', port: 80, endpoints: [{ workload: 'server', targetPort: h1App.port }] },
      { name: 'late', port: 80, endpoints: [{ workload: 'server', targetPort: latePort }] },
      { name: 'swap', port: 80, endpoints: [{ workload: 'server', targetPort: swapPort }] },
    ],
  })
  const server = mesh.sidecar('server')
  const session = http2.connect(`http://127.0.0.1:${mesh.sidecar('client').ports.outbound}`)
  session.on('error', () => {})
  t.teardown(() => { session.destroy() })
  await once(session, 'connect')

  await t.test('request trailers from an h2 caller to an HTTP/1.1 app: the request goes through, the drop is logged', async (t) => {
    const r = await viaH2(session, 'h1app', { method: 'POST', body: 'stream' }, [Buffer.from('with a trailer')], { 'x-client-trailer': 'lost' })
    t.equal(r.status, 200)
    t.equal(r.body.toString(), 'with a trailer')
    t.equal(r.headers['x-app-request-trailers'], 'none', 'HTTP/1.1 to the app carries no request trailers')
    await eventually(() => server.logs().some((l) => l.msg === 'request trailers dropped' && l.port === h1App.port), 5_000, 'the drop logged')
    t.match(server.logs().find((l) => l.msg === 'request trailers dropped'), { level: 'warn', port: h1App.port, trailers: ['x-client-trailer'] })
  })

  await t.test('an app that starts after its sidecar is detected on its first request; request trailers sent meanwhile arrive', async (t) => {
    await startH2App(latePort)
    const r = await viaH2(session, 'late', { method: 'POST', body: 'stream' }, [Buffer.from('first request')], { 'x-client-trailer': 'kept' })
    t.equal(r.status, 200)
    t.equal(r.headers['x-app-proto'], 'HTTP/2')
    t.equal(r.body.toString(), 'first request')
    t.equal(r.trailers['x-app-request-trailers'], 'x-client-trailer=kept', 'the app saw the request trailer')
    await eventually(() => server.logs().some((l) => l.msg === 'app protocol detected' && l.port === latePort), 5_000, 'the detection logged')
    t.match(server.logs().filter((l) => l.msg === 'app protocol detected' && l.port === latePort), [{ protocol: 'http2' }], 'detected once, on the first request')
  })

  /** Requests until one is answered 200 (at most 5); the ones that failed before it, as status + reason. */
  async function untilAnswered (): Promise<{ reply?: Reply, failures: string[] }> {
    const failures: string[] = []
    for (let i = 0; i < 5; i++) {
      const r = await viaH2(session, 'swap', { method: 'GET', body: 'none' }, [])
      if (r.status === 200) return { reply: r, failures }
      failures.push(`${r.status} ${String(r.headers['remora-proxy-error'])}`)
    }
    return { failures }
  }
  const detections = (): Array<Record<string, unknown>> => server.logs().filter((l) => l.msg === 'app protocol detected' && l.port === swapPort)

  await t.test('an app that changes protocol on the same port is detected again', async (t) => {
    const before = await viaH2(session, 'swap', { method: 'GET', body: 'none' }, [])
    t.equal(before.headers['x-app-proto'], 'HTTP/2')

    // h2 → HTTP/1.1: the sidecar's h2 connection to the new app ends before any SETTINGS.
    const closed = Promise.all([...first.sessions].map((s) => once(s, 'close')))
    for (const s of first.sessions) s.destroy()
    first.server.close()
    await Promise.all([closed, once(first.server, 'close')])
    const second = await startH1App(swapPort)
    // The sidecar learns of the change from the failed connection: at most the requests in that
    // window fail (502 app reset); then it probes again and speaks HTTP/1.1.
    const toH1 = await untilAnswered()
    t.equal(toH1.reply?.headers['x-app-proto'], 'HTTP/1.1', `the HTTP/1.1 app answered (after ${toH1.failures.join(', ') || 'no failures'})`)
    t.ok(toH1.failures.length <= 2, 'at most the requests that found out failed')
    t.ok(toH1.failures.every((f) => f === '502 app reset'), 'and they failed as app reset')
    await eventually(() => detections().length === 2, 5_000, 'a second detection')

    // HTTP/1.1 → h2: the app's answer to an HTTP/1.1 request is not HTTP/1.1.
    second.server.closeAllConnections()
    second.server.close()
    await once(second.server, 'close')
    await startH2App(swapPort)
    const toH2 = await untilAnswered()
    t.equal(toH2.reply?.headers['x-app-proto'], 'HTTP/2', `the h2c app answered (after ${toH2.failures.join(', ') || 'no failures'})`)
    t.ok(toH2.failures.length <= 2, 'at most the requests that found out failed')
    t.ok(toH2.failures.every((f) => f === '502 app reset'), 'and they failed as app reset')
    await eventually(() => detections().length === 3, 5_000, 'a third detection')
    t.match(detections(), [{ protocol: 'http2' }, { protocol: 'http1' }, { protocol: 'http2' }], 'each detection logged')
  })
})

t.test('the probe, directly: what decides the protocol, and when nothing is decided', async (t) => {
  const servers: net.Server[] = []
  t.teardown(() => { for (const s of servers) s.close() })
  async function tcpApp (onSocket: (s: net.Socket) => void): Promise<number> {
    const server = net.createServer(onSocket)
    servers.push(server)
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    return (server.address() as net.AddressInfo).port
  }
  const silent: net.Socket[] = []
  t.teardown(() => { for (const s of silent) s.destroy() })

  const closes = await tcpApp((s) => s.destroy())
  t.match(await probeAppProtocol(closes, 2_000), { protocol: 'http1', evidence: /closed the connection|reset the connection/ }, 'closed on the preface: HTTP/1.1')

  const garbage = await tcpApp((s) => { s.on('error', () => {}); s.end('SSH-2.0-OpenSSH_9.6\r\n') })
  t.match(await probeAppProtocol(garbage, 2_000), { protocol: 'http1', evidence: /not an HTTP\/2 SETTINGS frame/ }, 'bytes that are not SETTINGS: HTTP/1.1')

  const mute = await tcpApp((s) => { silent.push(s) })
  const timedOut = await probeAppProtocol(mute, 300).then(() => undefined, (err: NodeJS.ErrnoException) => err)
  t.equal(timedOut?.code, 'ETIMEDOUT', 'an app that answers nothing: not decided (504 connect timeout for the request)')
  t.match(timedOut?.message, /declare the port's protocol/, 'and the detail says what to do')

  const refused = await freePort()
  const down = await probeAppProtocol(refused, 2_000).then(() => undefined, (err: NodeJS.ErrnoException) => err)
  t.equal(down?.code, 'ECONNREFUSED', 'nothing listening: not decided (503 app unavailable), asked again next time')
})
