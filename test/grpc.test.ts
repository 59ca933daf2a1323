// Black-box: a real grpc-js client and server with two sidecars between them, reached both through
// the client sidecar as an HTTP proxy (CONNECT, h2 inside the tunnel) and as a direct h2c listener.
import t from 'tap'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import { randomBytes } from 'node:crypto'
import { EventEmitter, once } from 'node:events'
import { startMesh, freePort, type SidecarProcess } from './harness/mesh.ts'

interface EchoRequest {
  message?: string
  payload?: Buffer
  delayMs?: number
  statusCode?: number
  statusMessage?: string
  replyBytes?: number
}
interface StreamRequest { count: number, intervalMs?: number, tag?: string }
interface EchoReply { message: string, payload: Buffer, index: number, count: number }
type Callback<T> = (err: grpc.ServiceError | null, value?: T) => void

interface EchoClient extends grpc.Client {
  unary (req: EchoRequest, md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback<EchoReply>): grpc.ClientUnaryCall
  serverStream (req: StreamRequest, md: grpc.Metadata, opts?: grpc.CallOptions): grpc.ClientReadableStream<EchoReply>
  clientStream (md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback<EchoReply>): grpc.ClientWritableStream<EchoRequest>
  bidi (md: grpc.Metadata, opts?: grpc.CallOptions): grpc.ClientDuplexStream<EchoRequest, EchoReply>
}

const PROTO = new URL('./fixtures/echo.proto', import.meta.url).pathname
const definition = protoLoader.loadSync(PROTO, { defaults: true })
const Echo = (grpc.loadPackageDefinition(definition) as unknown as {
  remora: { test: { Echo: grpc.ServiceClientConstructor } }
}).remora.test.Echo

const MB = 1024 * 1024
/** The default 4 MiB limit is exceeded by a 4 MiB payload plus framing; both ends raise it. */
const SIZE_OPTIONS = { 'grpc.max_receive_message_length': 16 * MB, 'grpc.max_send_message_length': 16 * MB }
const UNICODE_MESSAGE = 'nicht gefunden: größe ✓ 未找到 🐟 100% done'

/** What the server app saw; tests wait on these to prove a cancellation crossed both sidecars. */
const serverEvents = new EventEmitter<{ cancelled: [method: string, tag: string] }>()

function waitCancelled (method: string, tag: string, timeoutMs = 5_000): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => { serverEvents.off('cancelled', listener); resolve(false) }, timeoutMs)
    const listener = (m: string, g: string): void => {
      if (m !== method || g !== tag) return
      clearTimeout(timer)
      serverEvents.off('cancelled', listener)
      resolve(true)
    }
    serverEvents.on('cancelled', listener)
  })
}

/** Echoes the caller's `x-*` metadata with a prefix, so each direction can be checked. */
function echoed (md: grpc.Metadata, prefix: string): grpc.Metadata {
  const out = new grpc.Metadata()
  for (const [key, values] of Object.entries(md.toJSON())) {
    if (!key.startsWith('x-')) continue
    for (const v of values) out.add(`${prefix}${key}`, v)
  }
  return out
}

/** Initial metadata: the echo plus what the app saw of the request's authority and mesh headers. */
function initialMetadata (call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown> | grpc.ServerReadableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>): grpc.Metadata {
  const md = echoed(call.metadata, 'echo-')
  md.set('seen-authority', call.getHost())
  md.set('seen-mesh-headers', Object.keys(call.metadata.getMap()).filter((k) => k.startsWith('remora-') && k !== 'remora-attempt').join(',') || 'none')
  return md
}

function startEchoServer (port: number): Promise<grpc.Server> {
  const server = new grpc.Server(SIZE_OPTIONS)
  server.addService(Echo.service, {
    unary: (call: grpc.ServerUnaryCall<Required<EchoRequest>, EchoReply>, callback: grpc.sendUnaryData<EchoReply>) => {
      const req = call.request
      const trailing = echoed(call.metadata, 'trailer-')
      // A status with no reply goes out trailers-only unless headers were sent first.
      if (req.statusCode === 0 || req.message === 'headers-first') call.sendMetadata(initialMetadata(call))
      const answer = (): void => {
        if (req.statusCode !== 0) {
          callback({ code: req.statusCode, details: req.statusMessage, metadata: trailing })
          return
        }
        const payload = req.replyBytes > 0 ? Buffer.alloc(req.replyBytes, 0x62) : req.payload
        callback(null, { message: req.message, payload, index: 0, count: payload.length }, trailing)
      }
      if (req.delayMs <= 0) { answer(); return }
      const timer = setTimeout(answer, req.delayMs)
      call.once('cancelled', () => {
        clearTimeout(timer)
        serverEvents.emit('cancelled', 'unary', req.message)
      })
    },
    serverStream: (call: grpc.ServerWritableStream<Required<StreamRequest>, EchoReply>) => {
      const { count, intervalMs, tag } = call.request
      let cancelled = false
      call.once('cancelled', () => {
        cancelled = true
        serverEvents.emit('cancelled', 'serverStream', tag)
      })
      call.sendMetadata(initialMetadata(call))
      const trailing = echoed(call.metadata, 'trailer-')
      const reply = (index: number): EchoReply => ({ message: tag, payload: Buffer.alloc(0), index, count })
      if (intervalMs <= 0) {
        for (let i = 0; i < count; i++) call.write(reply(i))
        call.end(trailing)
        return
      }
      let i = 0
      const tick = (): void => {
        if (cancelled) return
        if (i >= count) { call.end(trailing); return }
        call.write(reply(i++))
        setTimeout(tick, intervalMs)
      }
      tick()
    },
    clientStream: (call: grpc.ServerReadableStream<Required<EchoRequest>, EchoReply>, callback: grpc.sendUnaryData<EchoReply>) => {
      call.sendMetadata(initialMetadata(call))
      const messages: string[] = []
      let bytes = 0
      call.on('data', (req: Required<EchoRequest>) => { messages.push(req.message); bytes += req.payload.length })
      call.on('end', () => callback(null, { message: messages.join(','), payload: Buffer.alloc(0), index: bytes, count: messages.length }, echoed(call.metadata, 'trailer-')))
    },
    bidi: (call: grpc.ServerDuplexStream<Required<EchoRequest>, EchoReply>) => {
      call.sendMetadata(initialMetadata(call))
      let index = 0
      call.on('data', (req: Required<EchoRequest>) => call.write({ message: req.message.toUpperCase(), payload: req.payload, index: index++, count: 0 }))
      call.on('end', () => call.end(echoed(call.metadata, 'trailer-')))
    },
  })
  return new Promise((resolve, reject) => {
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err) => {
      if (err !== null) reject(err)
      else resolve(server)
    })
  })
}

type Mode = 'proxy' | 'h2c'

/**
 * proxy: grpc-js reads `grpc_proxy` when the channel is made and sends CONNECT to the sidecar;
 * h2c: the channel dials the outbound listener and names the service in :authority.
 */
function makeClient (mode: Mode, sidecar: SidecarProcess, authority: string): EchoClient {
  if (mode === 'proxy') {
    const saved = { grpc_proxy: process.env.grpc_proxy, no_grpc_proxy: process.env.no_grpc_proxy, no_proxy: process.env.no_proxy }
    process.env.grpc_proxy = sidecar.proxyUrl
    // grpc-js skips the proxy for any target whose host ends with a no_proxy entry.
    delete process.env.no_grpc_proxy
    delete process.env.no_proxy
    try {
      return new Echo(`dns:///${authority}`, grpc.credentials.createInsecure(), SIZE_OPTIONS) as unknown as EchoClient
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k]
        else process.env[k] = v
      }
    }
  }
  return new Echo(`127.0.0.1:${sidecar.ports.outbound}`, grpc.credentials.createInsecure(), {
    ...SIZE_OPTIONS,
    'grpc.default_authority': authority,
    'grpc.enable_http_proxy': 0,
  }) as unknown as EchoClient
}

interface UnaryResult {
  err: grpc.ServiceError | null
  reply?: EchoReply
  headers?: grpc.Metadata
  status: grpc.StatusObject
}

function unary (client: EchoClient, req: EchoRequest, md = new grpc.Metadata(), opts: grpc.CallOptions = {}, onCall?: (call: grpc.ClientUnaryCall) => void): Promise<UnaryResult> {
  return new Promise((resolve) => {
    let err: grpc.ServiceError | null = null
    let reply: EchoReply | undefined
    let headers: grpc.Metadata | undefined
    const call = client.unary(req, md, opts, (e, r) => { err = e; reply = r })
    call.on('metadata', (m: grpc.Metadata) => { headers = m })
    call.on('status', (status: grpc.StatusObject) => resolve({ err, reply, headers, status }))
    onCall?.(call)
  })
}

function requestMetadata (): grpc.Metadata {
  const md = new grpc.Metadata()
  md.set('x-text', 'hello, mesh')
  md.add('x-multi', 'one')
  md.add('x-multi', 'two')
  md.set('x-data-bin', Buffer.from([0, 1, 2, 0xfe, 0xff, 0x0d, 0x0a]))
  return md
}

const appPort = await freePort()
const deadPort = await freePort()
const server = await startEchoServer(appPort)
t.teardown(() => { server.forceShutdown() })

const mesh = await startMesh(t, {
  workloads: {
    client: { appPorts: [1] },
    server: { appPorts: [{ port: appPort, protocol: 'grpc' }, { port: deadPort, protocol: 'grpc' }] },
  },
  services: [
    { name: 'echo', port: 50051, protocol: 'grpc', endpoints: [{ workload: 'server', targetPort: appPort }] },
    // Declared, but nothing listens on the port: the inbound sidecar cannot reach the app.
    { name: 'down', port: 50051, protocol: 'grpc', endpoints: [{ workload: 'server', targetPort: deadPort }] },
  ],
}, { env: { REMORA_OUTBOUND_POLICY: 'registry-only' } }) // unknown authorities are refused, not passed through
const sidecar = mesh.sidecar('client')

for (const mode of ['proxy', 'h2c'] as const) {
  t.test(`${mode}: gRPC through two sidecars`, async (t) => {
    const client = makeClient(mode, sidecar, 'echo.test:50051')
    t.teardown(() => client.close())

    t.test('unary call, with metadata (text, repeated, binary) both ways and trailing metadata', async (t) => {
      const res = await unary(client, { message: 'hi' }, requestMetadata())
      t.equal(res.err, null)
      t.equal(res.status.code, grpc.status.OK)
      t.equal(res.reply?.message, 'hi')
      const headers = res.headers ?? new grpc.Metadata()
      t.same(headers.get('echo-x-text'), ['hello, mesh'])
      // node:http2 joins repeated header fields on receipt, so the app sees one value (as without a mesh).
      t.same(headers.get('echo-x-multi'), ['one, two'])
      t.same(headers.get('echo-x-data-bin'), [Buffer.from([0, 1, 2, 0xfe, 0xff, 0x0d, 0x0a])], 'binary metadata crosses both sidecars byte-exact')
      t.same(headers.get('seen-authority'), ['echo.test:50051'], 'the app sees the authority the client used')
      t.same(headers.get('seen-mesh-headers'), ['none'], 'mesh headers never reach the app')
      t.same(res.status.metadata.get('trailer-x-text'), ['hello, mesh'], 'trailing metadata arrives')
      t.same(res.status.metadata.get('trailer-x-data-bin'), [Buffer.from([0, 1, 2, 0xfe, 0xff, 0x0d, 0x0a])], 'binary trailing metadata arrives')
    })

    t.test('server streaming: 1000 messages in order, then trailing metadata', async (t) => {
      const md = new grpc.Metadata()
      md.set('x-trace-bin', Buffer.from('trailer bytes'))
      const call = client.serverStream({ count: 1000, tag: 'many' }, md)
      const indexes: number[] = []
      call.on('data', (r: EchoReply) => indexes.push(r.index))
      const [status] = await once(call, 'status') as [grpc.StatusObject]
      t.equal(status.code, grpc.status.OK, status.details)
      t.equal(indexes.length, 1000)
      t.ok(indexes.every((v, i) => v === i), 'messages arrive in order')
      t.same(status.metadata.get('trailer-x-trace-bin'), [Buffer.from('trailer bytes')])
    })

    t.test('client streaming: 200 messages, one reply', async (t) => {
      let call!: grpc.ClientWritableStream<EchoRequest>
      const reply = await new Promise<EchoReply>((resolve, reject) => {
        call = client.clientStream(new grpc.Metadata(), {}, (err, r) => { if (err !== null) reject(err); else resolve(r as EchoReply) })
        for (let i = 0; i < 200; i++) call.write({ message: String(i), payload: Buffer.alloc(1000, i) })
        call.end()
      })
      t.equal(reply.count, 200)
      t.equal(reply.index, 200_000, 'every payload byte arrived')
      t.equal(reply.message, Array.from({ length: 200 }, (_, i) => String(i)).join(','))
    })

    t.test('bidi streaming: ping-pong, each reply before the next request', async (t) => {
      const md = new grpc.Metadata()
      md.set('x-who', 'bidi')
      const call = client.bidi(md)
      const [headers] = await once(call, 'metadata') as [grpc.Metadata]
      t.same(headers.get('echo-x-who'), ['bidi'])
      for (let i = 0; i < 50; i++) {
        call.write({ message: `m${i}`, payload: Buffer.from([i]) })
        const [r] = await once(call, 'data') as [EchoReply]
        if (r.message !== `M${i}` || r.index !== i || r.payload[0] !== i) t.fail(`reply ${i} is ${JSON.stringify(r)}`)
      }
      const status = once(call, 'status') as Promise<[grpc.StatusObject]>
      call.end()
      const [s] = await status
      t.equal(s.code, grpc.status.OK)
      t.same(s.metadata.get('trailer-x-who'), ['bidi'])
    })

    t.test('an error status with a unicode message arrives intact (trailers-only and after headers)', async (t) => {
      const md = new grpc.Metadata()
      md.set('x-err-bin', Buffer.from([9, 8, 7]))
      const only = await unary(client, { statusCode: grpc.status.NOT_FOUND, statusMessage: UNICODE_MESSAGE }, md)
      t.equal(only.status.code, grpc.status.NOT_FOUND)
      t.equal(only.status.details, UNICODE_MESSAGE)
      t.equal(only.err?.code, grpc.status.NOT_FOUND)
      t.same(only.status.metadata.get('trailer-x-err-bin'), [Buffer.from([9, 8, 7])], 'metadata on a trailers-only status arrives')
      const late = await unary(client, { message: 'headers-first', statusCode: grpc.status.PERMISSION_DENIED, statusMessage: UNICODE_MESSAGE }, md)
      t.equal(late.status.code, grpc.status.PERMISSION_DENIED)
      t.equal(late.status.details, UNICODE_MESSAGE)
      t.same(late.status.metadata.get('trailer-x-err-bin'), [Buffer.from([9, 8, 7])])
    })

    t.test('deadline shorter than the server delay: DEADLINE_EXCEEDED, and the server call is cancelled', async (t) => {
      const tag = `deadline-${mode}`
      const cancelled = waitCancelled('unary', tag)
      const res = await unary(client, { message: tag, delayMs: 5_000 }, new grpc.Metadata(), { deadline: Date.now() + 300 })
      t.equal(res.status.code, grpc.status.DEADLINE_EXCEEDED)
      t.ok(await cancelled, 'the server saw the call cancelled')
    })

    t.test('client cancels a unary call: the server sees it cancelled', async (t) => {
      const tag = `cancel-unary-${mode}`
      const cancelled = waitCancelled('unary', tag)
      const res = await unary(client, { message: tag, delayMs: 10_000 }, new grpc.Metadata(), {}, (call) => setTimeout(() => call.cancel(), 200))
      t.equal(res.status.code, grpc.status.CANCELLED)
      t.ok(await cancelled, 'RST_STREAM crossed both sidecars to the app')
    })

    t.test('client cancels a server stream mid-way: the server sees it cancelled', async (t) => {
      const tag = `cancel-stream-${mode}`
      const cancelled = waitCancelled('serverStream', tag)
      const call = client.serverStream({ count: 100_000, intervalMs: 5, tag }, new grpc.Metadata())
      let received = 0
      call.on('data', () => { if (++received === 5) call.cancel() })
      call.on('error', () => { /* CANCELLED, reported in status */ })
      const status = await new Promise<grpc.StatusObject>((resolve) => call.once('status', resolve))
      t.equal(status.code, grpc.status.CANCELLED)
      t.ok(received >= 5)
      t.ok(await cancelled, 'the server stream was cancelled, not left running')
    })

    t.test('4 MiB messages both ways', async (t) => {
      const payload = randomBytes(4 * MB)
      const res = await unary(client, { message: 'big', payload })
      t.equal(res.status.code, grpc.status.OK, res.status.details)
      t.equal(res.reply?.payload.length, payload.length)
      t.ok(res.reply?.payload.equals(payload), 'the 4 MiB echo is byte-exact')
      const down = await unary(client, { message: 'big', replyBytes: 4 * MB + 17 })
      t.equal(down.status.code, grpc.status.OK, down.status.details)
      t.equal(down.reply?.payload.length, 4 * MB + 17)
    })

    t.test('gRPC app down: UNAVAILABLE with the proxy reason', async (t) => {
      const down = makeClient(mode, sidecar, 'down.test:50051')
      t.teardown(() => down.close())
      const res = await unary(down, { message: 'x' })
      t.equal(res.status.code, grpc.status.UNAVAILABLE)
      t.match(res.status.details, /^app unavailable: .*connect ECONNREFUSED 127\.0\.0\.1:\d+/, 'the proxy reason and detail arrive decoded')
      t.same(res.status.metadata.get('remora-proxy-error'), ['app unavailable'])
    })

    t.test('unknown authority: UNAVAILABLE', async (t) => {
      const nowhere = makeClient(mode, sidecar, 'nowhere.test:50051')
      t.teardown(() => nowhere.close())
      const res = await unary(nowhere, { message: 'x' }, new grpc.Metadata(), { deadline: Date.now() + 10_000 })
      t.equal(res.status.code, grpc.status.UNAVAILABLE, res.status.details)
      if (mode === 'h2c') {
        // Through CONNECT the sidecar refuses the tunnel (503); grpc-js reports only that it failed.
        t.equal(res.status.details, 'unknown authority: nowhere.test:50051')
        t.same(res.status.metadata.get('remora-proxy-error'), ['unknown authority'])
      }
    })
  })
}
