// Black-box WebSocket: a `ws` client → client sidecar (Host header, or CONNECT as an HTTP proxy) →
// web sidecar → a `ws` echo app; messages both ways, clean and abrupt closes, and refused upgrades.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import http from 'node:http'
import type { Duplex } from 'node:stream'
import WebSocket, { WebSocketServer } from 'ws'
import { eventually, startMesh, type SidecarProcess, type Teardown } from './harness/mesh.ts'
import { startApp } from './harness/http.ts'

interface Upgrade { url: string, host: string, headers: http.IncomingHttpHeaders }

/**
 * The app: a ws echo server on /chat (says hello first, closes with 4001 when asked, drops the
 * connection when told to), and a hand-written 400 for an upgrade anywhere else.
 */
async function startWsApp (t: Teardown): Promise<{ port: number, upgrades: Upgrade[], serverCloses: Array<{ code: number, reason: string }> }> {
  const upgrades: Upgrade[] = []
  const serverCloses: Array<{ code: number, reason: string }> = []
  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: true,
    handleProtocols: (protocols) => protocols.has('chat.v2') ? 'chat.v2' : false,
  })
  wss.on('connection', (ws) => {
    ws.send('hello from the app')
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? '' : (data as Buffer).toString()
      if (text === 'please close') { ws.close(4001, 'closing as asked'); return }
      if (text === 'please drop') { ws.terminate(); return }
      ws.send(data as Buffer, { binary: isBinary })
    })
    ws.on('close', (code, reason) => serverCloses.push({ code, reason: reason.toString() }))
  })
  const app = await startApp(t, (_req, res) => { res.statusCode = 404; res.end() })
  app.server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    upgrades.push({ url: req.url ?? '', host: req.headers.host ?? '', headers: req.headers })
    if (req.url === '/chat') {
      wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req))
      return
    }
    const body = 'no websocket here; try /chat\n'
    socket.end(`HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\nx-app-reason: wrong path\r\nconnection: close\r\n\r\n${body}`)
  })
  t.teardown(() => { for (const c of wss.clients) c.terminate(); wss.close() })
  return { port: app.port, upgrades, serverCloses }
}

/** `plain` is an app with no upgrade support at all: node answers the upgrade as a normal request. */
async function startSidecars (t: Teardown, wsPort: number, plainPort: number): Promise<SidecarProcess> {
  const mesh = await startMesh(t, {
    workloads: { client: { appPorts: [1] }, web: { appPorts: [wsPort] }, plain: { appPorts: [plainPort] } },
    services: [
      { name: 'web', port: 80, endpoints: [{ workload: 'web', targetPort: wsPort }] },
      { name: 'plain', port: 80, endpoints: [{ workload: 'plain', targetPort: plainPort }] },
    ],
  })
  return mesh.sidecar('client')
}

/** An HTTP-proxy client: each connection is a CONNECT tunnel through the client sidecar. */
class ConnectAgent extends http.Agent {
  readonly #proxyPort: number
  constructor (proxyPort: number) { super({ keepAlive: false }); this.#proxyPort = proxyPort }
  override createConnection (options: http.ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): undefined {
    const authority = `${options.host ?? 'localhost'}:${options.port ?? 80}`
    const req = http.request({ host: '127.0.0.1', port: this.#proxyPort, method: 'CONNECT', path: authority, headers: { host: authority }, agent: false })
    req.once('connect', (res, socket) => {
      if (res.statusCode === 200) callback?.(null, socket)
      else { socket.destroy(); callback?.(new Error(`CONNECT ${authority}: ${res.statusCode}`), socket) }
    })
    req.once('error', (err) => callback?.(err, req.socket as Duplex))
    req.end()
    return undefined
  }
}

/** Collects every message so a test can wait for the n-th one. */
function inbox (ws: WebSocket): { next (): Promise<{ data: Buffer, binary: boolean }> } {
  const queue: Array<{ data: Buffer, binary: boolean }> = []
  const waiting: Array<(m: { data: Buffer, binary: boolean }) => void> = []
  ws.on('message', (data, binary) => {
    const m = { data: data as Buffer, binary }
    const w = waiting.shift()
    if (w !== undefined) w(m); else queue.push(m)
  })
  return {
    next: () => {
      const m = queue.shift()
      if (m !== undefined) return Promise.resolve(m)
      return new Promise((resolve, reject) => {
        waiting.push(resolve)
        ws.once('close', () => reject(new Error('closed while waiting for a message')))
      })
    },
  }
}

t.test('WebSocket through two sidecars: text, binary and 1 MB messages both ways, then clean closes', async (t) => {
  const app = await startWsApp(t)
  const plain = await startApp(t, (_req, res) => { res.end() })
  const client = await startSidecars(t, app.port, plain.port)
  const agent = new ConnectAgent(client.ports.outbound)
  t.teardown(() => agent.destroy())
  const ways: Array<[string, () => WebSocket]> = [
    ['Host header', () => new WebSocket(`ws://127.0.0.1:${client.ports.outbound}/chat`, ['chat.v2', 'chat.v1'], { headers: { host: 'web' } })],
    ['HTTP proxy (CONNECT)', () => new WebSocket('ws://web/chat', ['chat.v2', 'chat.v1'], { agent })],
  ]
  for (const [via, open] of ways) {
    const before = app.upgrades.length
    const ws = open()
    const box = inbox(ws)
    await once(ws, 'open')
    t.equal(ws.protocol, 'chat.v2', `${via}: the subprotocol the app chose reaches the client`)
    t.match(ws.extensions, /permessage-deflate/, `${via}: the extension the app accepted reaches the client`)
    const seen = app.upgrades[before]
    t.equal(seen.url, '/chat', `${via}: the app sees the upgrade path`)
    t.match(seen.host, /^web(:80)?$/, `${via}: the app sees the service's Host`)
    t.same(Object.keys(seen.headers).filter((k) => k.startsWith('remora-') && k !== 'remora-attempt'), [], `${via}: no mesh header but remora-attempt reaches the app`)

    const hello = await box.next()
    t.same([hello.data.toString(), hello.binary], ['hello from the app', false], `${via}: the app speaks first`)
    ws.send('héllo ✓')
    const text = await box.next()
    t.same([text.data.toString(), text.binary], ['héllo ✓', false], `${via}: text echoed as text`)
    const small = Buffer.from([0, 1, 2, 0xfe, 0xff])
    ws.send(small)
    const bin = await box.next()
    t.ok(bin.binary && bin.data.equals(small), `${via}: binary echoed as binary`)
    const big = randomBytes(1024 * 1024)
    ws.send(big)
    const bigBack = await box.next()
    t.ok(bigBack.binary && bigBack.data.equals(big), `${via}: a 1 MB message comes back byte for byte`)

    // The client closes: both ends see 1000 and the reason.
    const serverClosesBefore = app.serverCloses.length
    ws.close(1000, 'bye from client')
    const [code, reason] = await once(ws, 'close') as [number, Buffer]
    t.equal(code, 1000, `${via}: client-side close code`)
    t.equal(reason.toString(), 'bye from client', `${via}: the client sees its own close echoed`)
    await eventually(() => app.serverCloses.length > serverClosesBefore, 5_000, 'the app sees the close')
    t.same(app.serverCloses[serverClosesBefore], { code: 1000, reason: 'bye from client' }, `${via}: the app sees the client's close frame`)

    // The app closes: the client sees the app's code and reason.
    const ws2 = open()
    const box2 = inbox(ws2)
    await once(ws2, 'open')
    await box2.next()
    ws2.send('please close')
    const [code2, reason2] = await once(ws2, 'close') as [number, Buffer]
    t.same([code2, reason2.toString()], [4001, 'closing as asked'], `${via}: the app's close code and reason reach the client`)

    // The app drops the connection: the client sees an abnormal close instead of hanging.
    const ws3 = open()
    const box3 = inbox(ws3)
    await once(ws3, 'open')
    await box3.next()
    ws3.send('please drop')
    const [code3] = await once(ws3, 'close') as [number]
    t.equal(code3, 1006, `${via}: a dropped app connection closes the client's (1006)`)
  }
})

t.test('a client that drops its WebSocket connection closes the app side too', async (t) => {
  const app = await startWsApp(t)
  const plain = await startApp(t, (_req, res) => { res.end() })
  const client = await startSidecars(t, app.port, plain.port)
  const ws = new WebSocket(`ws://127.0.0.1:${client.ports.outbound}/chat`, { headers: { host: 'web' } })
  const box = inbox(ws)
  await once(ws, 'open')
  await box.next()
  ws.terminate()
  await eventually(() => app.serverCloses.length > 0, 5_000, 'the app sees the close')
  t.equal(app.serverCloses[0].code, 1006, 'the app sees the connection go away')
})

t.test('an upgrade the app refuses is relayed as the app\'s own response', async (t) => {
  const app = await startWsApp(t)
  const plain = await startApp(t, (req, res) => {
    res.writeHead(400, { 'content-type': 'text/plain', 'x-app-reason': 'no upgrades' })
    res.end(`plain HTTP app; got ${req.method} ${req.url} with upgrade=${req.headers.upgrade ?? 'none'}\n`)
  })
  const client = await startSidecars(t, app.port, plain.port)
  const agent = new ConnectAgent(client.ports.outbound)
  t.teardown(() => agent.destroy())
  const cases: Array<[string, () => WebSocket, string, RegExp]> = [
    ['ws app, wrong path, Host header', () => new WebSocket(`ws://127.0.0.1:${client.ports.outbound}/nope`, { headers: { host: 'web' } }), 'wrong path', /^no websocket here; try \/chat\n$/],
    ['ws app, wrong path, CONNECT', () => new WebSocket('ws://web/nope', { agent }), 'wrong path', /^no websocket here; try \/chat\n$/],
    ['app without upgrade support', () => new WebSocket(`ws://127.0.0.1:${client.ports.outbound}/ws`, { headers: { host: 'plain' } }), 'no upgrades', /^plain HTTP app; got GET \/ws/],
  ]
  for (const [what, open, reasonHeader, body] of cases) {
    const ws = open()
    ws.on('error', () => { /* expected: the handshake fails */ })
    const [, res] = await once(ws, 'unexpected-response') as [http.ClientRequest, http.IncomingMessage]
    let text = ''
    res.setEncoding('utf8')
    for await (const c of res) text += c as string
    t.equal(res.statusCode, 400, `${what}: the app's 400`)
    t.equal(res.headers['x-app-reason'], reasonHeader, `${what}: the app's headers`)
    t.match(text, body, `${what}: the app's body`)
    ws.terminate()
  }
})
