// Opaque bytes through pipeTcp between real sockets: counted both ways, half-close carried, one side gone closes the other, idle connections closed.
import t, { type Test } from 'tap'
import net from 'node:net'
import { once } from 'node:events'
import { createHash } from 'node:crypto'
import { pipeTcp, type PipeResult } from '../../src/transport/tcp-pipe.ts'

interface Pipe {
  /** The app's connection, as the app that opened it holds it. */
  client: net.Socket
  /** The far app's side of the connection (the server the bytes go to). */
  server: net.Socket
  /** The two sockets pipeTcp was given: the accepted one, and the one it connected upstream. */
  proxied: { accepted: net.Socket, upstream: net.Socket }
  /** Resolves with pipeTcp's result. */
  done: Promise<PipeResult>
  /** How often done was called. */
  calls: () => number
}

async function listen (t: Test, server: net.Server): Promise<number> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.close() })
  return (server.address() as net.AddressInfo).port
}

/**
 * client → [accepted | pipeTcp | upstream] → server. The proxied sockets are half-open capable, as the
 * sidecar's are; the two apps too when `apps.halfOpen` (else each ends its side when the other does,
 * so an end from the proxy closes it: what most apps do).
 */
async function pipe (t: Test, idleMs: number, apps: { halfOpen: boolean }): Promise<Pipe> {
  const app = net.createServer({ allowHalfOpen: apps.halfOpen })
  const appPort = await listen(t, app)
  let calls = 0
  let resolveDone!: (r: PipeResult) => void
  const done = new Promise<PipeResult>((resolve) => { resolveDone = resolve })
  const proxy = net.createServer({ allowHalfOpen: true })
  const proxied = new Promise<Pipe['proxied']>((resolve) => {
    proxy.once('connection', (accepted: net.Socket) => {
      const upstream = net.connect({ host: '127.0.0.1', port: appPort, allowHalfOpen: true })
      pipeTcp(accepted, upstream, idleMs, (r) => { calls++; resolveDone(r) })
      resolve({ accepted, upstream })
    })
  })
  const proxyPort = await listen(t, proxy)
  const accepted = once(app, 'connection') as Promise<[net.Socket]>
  const client = net.connect({ host: '127.0.0.1', port: proxyPort, allowHalfOpen: apps.halfOpen })
  client.on('error', () => {})
  t.teardown(() => { client.destroy() })
  const [server] = await accepted
  server.on('error', () => {})
  t.teardown(() => { server.destroy() })
  return { client, server, proxied: await proxied, done, calls: () => calls }
}

/** Everything `s` sends until it ends. */
async function readToEnd (s: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = []
  s.on('data', (c: Buffer) => chunks.push(c))
  if (!s.readableEnded) await once(s, 'end')
  return Buffer.concat(chunks)
}

const closed = (s: net.Socket): Promise<unknown> => s.closed ? Promise.resolve() : once(s, 'close')
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

t.test('bytes both ways arrive whole and are counted: up from the client, down to it', async (t) => {
  const p = await pipe(t, 0, { halfOpen: true })
  const up = Buffer.alloc(1 << 20, 'u')
  up.write('first', 0)
  const down = Buffer.alloc(3 << 20, 'd')
  down.write('last', down.length - 4)
  const atServer = readToEnd(p.server).then((b) => { p.server.end(down); return b })
  const atClient = readToEnd(p.client)
  p.client.end(up)
  t.equal(sha(await atServer), sha(up), '1 MiB up, intact')
  t.equal(sha(await atClient), sha(down), '3 MiB down, intact (backpressure held)')
  t.same(await p.done, { bytesUp: up.length, bytesDown: down.length, error: undefined })
  await Promise.all([closed(p.client), closed(p.server)])
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(p.calls(), 1, 'done called once')
})

t.test('half-close: the client ends its side, the server still answers, the client reads it, then both close', async (t) => {
  const p = await pipe(t, 0, { halfOpen: true })
  let serverSawEnd = false
  p.server.on('data', () => {})
  p.server.on('end', () => { serverSawEnd = true; p.server.end('the answer') })
  const atClient = readToEnd(p.client)
  p.client.end('the question')
  t.equal((await atClient).toString(), 'the answer', 'written after the client\'s FIN reached the server')
  t.ok(serverSawEnd, 'the server saw the client\'s end as an end of its input, not a close')
  t.same(await p.done, { bytesUp: 12, bytesDown: 10, error: undefined })
  await Promise.all([closed(p.client), closed(p.server)])
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(p.calls(), 1, 'done called once')
})

t.test('half-close the other way: a server that says bye and ends; a client that is not half-open ends too', async (t) => {
  const p = await pipe(t, 0, { halfOpen: false })
  p.server.end('220 bye\n')
  t.equal((await readToEnd(p.client)).toString(), '220 bye\n')
  const r = await p.done
  t.same(r, { bytesUp: 0, bytesDown: 8, error: undefined })
  await Promise.all([closed(p.client), closed(p.server)])
})

t.test('the server resets its connection: the client\'s is closed too, done says why', async (t) => {
  const p = await pipe(t, 0, { halfOpen: false })
  p.client.write('hello')
  await once(p.server, 'data')
  p.server.resetAndDestroy()
  await closed(p.client)
  const r = await p.done
  t.match(r, { bytesUp: 5, bytesDown: 0, error: /ECONNRESET|EPIPE/ })
  t.ok(p.proxied.accepted.destroyed && p.proxied.upstream.destroyed, 'both proxied sockets destroyed')
  t.equal(p.calls(), 1)
})

t.test('one proxied side destroyed (no error): the other goes too, done is called, nothing hangs', async (t) => {
  for (const side of ['accepted', 'upstream'] as const) {
    const p = await pipe(t, 0, { halfOpen: false })
    p.proxied[side].destroy()
    await Promise.all([closed(p.client), closed(p.server)])
    const r = await p.done
    t.equal(r.bytesUp + r.bytesDown, 0, side)
    t.ok(p.proxied.accepted.destroyed && p.proxied.upstream.destroyed, `${side} destroyed: so is the other`)
    t.equal(p.calls(), 1)
  }
})

t.test('idle: no byte either way for idleMs closes both sides with error "idle timeout"', async (t) => {
  const p = await pipe(t, 50, { halfOpen: false })
  p.client.write('x')
  await once(p.server, 'data')
  // Nothing more: the client's close is what we wait for.
  await Promise.all([closed(p.client), closed(p.server)])
  t.same(await p.done, { bytesUp: 1, bytesDown: 0, error: 'idle timeout' })
  t.equal(p.calls(), 1)
})
