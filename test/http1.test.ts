// Black-box HTTP/1.1: real clients (curl, undici, node:http, raw sockets) → client sidecar → web
// sidecar → a node:http app, in HTTP_PROXY mode (absolute-form and CONNECT) and Host-header mode.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdtempSync, writeFileSync } from 'node:fs'
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { Client, Pool, ProxyAgent, type Dispatcher } from 'undici'
import { eventually, freePort, type SidecarProcess, type Teardown } from './harness/mesh.ts'
import { curl, header, parseResponses, rawExchange, startApp, startPair } from './harness/http.ts'

const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex')

interface Echo { method: string, url: string, host: string, headers: Record<string, string | string[]>, body: string }

/** Answers with what it received, as JSON. */
function echo (req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = []
  req.on('data', (c: Buffer) => chunks.push(c))
  req.on('end', () => {
    const out: Echo = { method: req.method ?? '', url: req.url ?? '', host: req.headers.host ?? '', headers: req.headers as Echo['headers'], body: Buffer.concat(chunks).toString() }
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify(out))
  })
}

interface Reply { status: number, headers: Record<string, string | string[] | undefined>, body: Buffer }

/** One way a user's client reaches `http://web<path>` through the client sidecar. */
interface Mode {
  name: string
  send (method: string, path: string, body?: string, headers?: Record<string, string>): Promise<Reply>
}

function modes (t: Teardown, client: SidecarProcess): Mode[] {
  const forward = new ProxyAgent({ uri: client.proxyUrl })
  const tunnel = new ProxyAgent({ uri: client.proxyUrl, proxyTunnel: true })
  const direct = new Client(client.proxyUrl)
  t.teardown(async () => { await Promise.all([forward.close(), tunnel.close(), direct.close()]) })
  const viaCurl = async (args: string[], method: string, body: string | undefined, extra: Record<string, string> = {}): Promise<Reply> => {
    const r = await curl(['--path-as-is', '-X', method, ...(body === undefined ? [] : ['--data-binary', body]), ...Object.entries(extra).flatMap(([k, v]) => ['-H', `${k}: ${v}`]), ...args])
    const headers: Reply['headers'] = {}
    for (const [name, value] of r.headers) {
      const had = headers[name]
      headers[name] = had === undefined ? value : [...(Array.isArray(had) ? had : [had]), value]
    }
    return { status: r.status, headers, body: r.body }
  }
  // dispatcher.request({ origin, path }) sends the path as given; request(url) would normalise it.
  const viaUndici = async (d: Dispatcher, origin: string, host: Record<string, string>, method: string, path: string, body: string | undefined, extra: Record<string, string> = {}): Promise<Reply> => {
    const r = await d.request({ origin, path, method: method as Dispatcher.HttpMethod, headers: { ...extra, ...host }, body })
    return { status: r.statusCode, headers: r.headers, body: Buffer.from(await r.body.arrayBuffer()) }
  }
  return [
    { name: 'curl -x (absolute-form)', send: (m, p, b, h) => viaCurl(['-x', client.proxyUrl, `http://web${p}`], m, b, h) },
    { name: 'curl Host header', send: (m, p, b, h) => viaCurl(['-H', 'Host: web', `${client.proxyUrl}${p}`], m, b, h) },
    { name: 'undici ProxyAgent (default: absolute-form)', send: (m, p, b, h) => viaUndici(forward, 'http://web', {}, m, p, b, h) },
    { name: 'undici ProxyAgent proxyTunnel (CONNECT)', send: (m, p, b, h) => viaUndici(tunnel, 'http://web', {}, m, p, b, h) },
    { name: 'undici Host header', send: (m, p, b, h) => viaUndici(direct, client.proxyUrl, { host: 'web' }, m, p, b, h) },
  ]
}

t.test('GET, POST, PUT and DELETE reach the app unchanged from every client mode', async (t) => {
  const app = await startApp(t, echo)
  const client = await startPair(t, app.port)
  for (const mode of modes(t, client)) {
    for (const method of ['GET', 'POST', 'PUT', 'DELETE']) {
      const body = method === 'POST' || method === 'PUT' ? `${method.toLowerCase()} body ✓` : undefined
      const r = await mode.send(method, '/things/42?x=1', body)
      t.equal(r.status, 200, `${mode.name} ${method}: status`)
      const seen = JSON.parse(r.body.toString()) as Echo
      t.equal(seen.method, method, `${mode.name} ${method}: method`)
      t.equal(seen.url, '/things/42?x=1', `${mode.name} ${method}: path and query`)
      t.equal(seen.body, body ?? '', `${mode.name} ${method}: body`)
      t.match(seen.host, /^web(:80)?$/, `${mode.name} ${method}: Host names the service`)
    }
  }
})

t.test('the app sees the Host header the client sent, in every mode, CONNECT tunnels included', async (t) => {
  const app = await startApp(t, echo)
  const client = await startPair(t, app.port)
  for (const mode of modes(t, client)) {
    const seen = JSON.parse((await mode.send('GET', '/')).body.toString()) as Echo
    t.equal(seen.host, 'web', mode.name)
  }
})

t.test('odd but legal paths and query strings reach the app byte for byte', async (t) => {
  const app = await startApp(t, echo)
  const client = await startPair(t, app.port)
  const paths = [
    '/a%20b/%E2%82%AC/caf%C3%A9?q=%2F%3F%26&x=a+b&empty=&flag',
    '/matrix;a=1;b=2/next;c=3',
    '/time/12:30:00/user@example.com/~tilde/!$&\'()*+,=',
    '//double//slashes/',
    '/a/%2e%2e/b/%2E/c', // percent-encoded dot segments must not be resolved
    '/x?a=1&a=2&redirect=http://other/?y=1',
    `/long/${'abcdefgh'.repeat(1000)}?tail=1`, // ~8 KB request target
  ]
  for (const mode of modes(t, client)) {
    for (const path of paths) {
      const r = await mode.send('GET', path)
      t.equal(r.status, 200, `${mode.name} ${path.slice(0, 40)}: status`)
      t.equal((JSON.parse(r.body.toString()) as Echo).url, path, `${mode.name}: ${path.slice(0, 40)}`)
    }
  }
})

t.test('a 50 MB upload and a 50 MB download stream through intact, with and without content-length', async (t) => {
  const SIZE = 50 * 1024 * 1024
  const payload = randomBytes(SIZE)
  const digest = sha256(payload)
  const app = await startApp(t, (req, res) => {
    if (req.method === 'POST') {
      const h = createHash('sha256')
      let n = 0
      req.on('data', (c: Buffer) => { h.update(c); n += c.length })
      req.on('end', () => res.end(JSON.stringify({ sha: h.digest('hex'), n, cl: req.headers['content-length'] ?? null, te: req.headers['transfer-encoding'] ?? null })))
      return
    }
    const chunked = req.url === '/chunked'
    if (!chunked) res.setHeader('content-length', SIZE)
    // Written in 1 MB pieces with backpressure, as a streaming app would.
    let off = 0
    const pump = (): void => {
      while (off < SIZE) {
        const piece = payload.subarray(off, off + 1024 * 1024)
        off += piece.length
        if (!res.write(piece)) { res.once('drain', pump); return }
      }
      res.end()
    }
    pump()
  })
  const client = await startPair(t, app.port)
  const pool = new Client(client.proxyUrl)
  t.teardown(() => pool.close())

  const chunks = function * (): Generator<Buffer> { for (let o = 0; o < SIZE; o += 256 * 1024) yield payload.subarray(o, o + 256 * 1024) }
  const chunkedUp = await pool.request({ origin: client.proxyUrl, path: '/up', method: 'POST', headers: { host: 'web' }, body: Readable.from(chunks()) })
  const upA = await chunkedUp.body.json() as { sha: string, n: number, cl: string | null, te: string | null }
  t.equal(upA.n, SIZE, 'chunked upload: every byte arrived')
  t.equal(upA.sha, digest, 'chunked upload: sha256 matches')
  t.equal(upA.cl, null, 'chunked upload: the app sees no content-length')
  t.equal(upA.te, 'chunked', 'chunked upload: the app sees a chunked body')

  const sizedUp = await pool.request({ origin: client.proxyUrl, path: '/up', method: 'POST', headers: { host: 'web', 'content-length': String(SIZE) }, body: Readable.from(chunks()) })
  const upB = await sizedUp.body.json() as { sha: string, n: number, cl: string | null }
  t.equal(upB.sha, digest, 'sized upload: sha256 matches')
  t.equal(upB.cl, String(SIZE), 'sized upload: the app sees the content-length the client sent')

  for (const path of ['/sized', '/chunked']) {
    const r = await pool.request({ origin: client.proxyUrl, path, method: 'GET', headers: { host: 'web' } })
    const h = createHash('sha256')
    let n = 0
    for await (const c of r.body) { h.update(c as Buffer); n += (c as Buffer).length }
    t.equal(n, SIZE, `${path} download: every byte arrived`)
    t.equal(h.digest('hex'), digest, `${path} download: sha256 matches`)
    if (path === '/sized') t.equal(r.headers['content-length'], String(SIZE), 'sized download: content-length preserved')
    else t.equal(r.headers['transfer-encoding'], 'chunked', 'chunked download: still chunked')
  }

  // The same through curl in HTTP_PROXY mode, from a file and to stdout.
  const dir = mkdtempSync(join(tmpdir(), 'remora-http1-'))
  const file = join(dir, 'payload.bin')
  writeFileSync(file, payload)
  const up = await curl(['-x', client.proxyUrl, '--data-binary', `@${file}`, 'http://web/up'])
  t.equal((JSON.parse(up.body.toString()) as { sha: string }).sha, digest, 'curl upload: sha256 matches')
  const down = await curl(['-x', client.proxyUrl, 'http://web/chunked'])
  t.equal(sha256(down.body), digest, 'curl download: sha256 matches')
})

t.test('200 concurrent requests over keep-alive connections all get their own answer', async (t) => {
  let active = 0
  let peak = 0
  const app = await startApp(t, (req, res) => {
    active++
    peak = Math.max(peak, active)
    const id = Number(req.url?.split('/')[2])
    setTimeout(() => {
      active--
      res.setHeader('x-id', String(id))
      res.end(`${id}:${'x'.repeat(id * 37)}`)
    }, 20 + (id % 7) * 5)
  })
  const client = await startPair(t, app.port)
  const pool = new Pool(client.proxyUrl, { connections: 50 })
  const agent = new ProxyAgent({ uri: client.proxyUrl })
  t.teardown(async () => { await Promise.all([pool.close(), agent.close()]) })
  for (const [name, one] of [
    ['undici Pool, Host header', (i: number) => pool.request({ origin: client.proxyUrl, path: `/n/${i}`, method: 'GET', headers: { host: 'web' } })],
    ['undici ProxyAgent', (i: number) => agent.request({ origin: 'http://web', path: `/n/${i}`, method: 'GET' })],
  ] as const) {
    const results = await Promise.all(Array.from({ length: 200 }, async (_, i) => {
      const r = await one(i)
      return { i, status: r.statusCode, id: r.headers['x-id'], body: await r.body.text() }
    }))
    const wrong = results.filter((r) => r.status !== 200 || r.id !== String(r.i) || r.body !== `${r.i}:${'x'.repeat(r.i * 37)}`)
    t.same(wrong, [], `${name}: every response matches its request`)
  }
  t.ok(peak > 1, `requests overlapped at the app (peak ${peak})`)
})

t.test('HEAD keeps content-length without a body; 204 and 304 carry no body; the connection stays usable', async (t) => {
  const app = await startApp(t, (req, res) => {
    switch (req.url) {
      case '/head': res.setHeader('content-length', '12345'); res.setHeader('x-kind', 'head'); res.end(req.method === 'HEAD' ? undefined : 'x'.repeat(12345)); break
      case '/204': res.writeHead(204, { 'x-kind': 'no-content' }); res.end(); break
      case '/304': res.writeHead(304, { etag: '"v1"', 'cache-control': 'max-age=60' }); res.end(); break
      default: res.end('after')
    }
  })
  const client = await startPair(t, app.port)
  // One connection: a stray body byte after any of these would corrupt the next response.
  const conn = new Client(client.proxyUrl, { pipelining: 1 })
  t.teardown(() => conn.close())
  const send = async (method: Dispatcher.HttpMethod, path: string, headers: Record<string, string> = {}): Promise<Reply> => {
    const r = await conn.request({ origin: client.proxyUrl, path, method, headers: { host: 'web', ...headers } })
    return { status: r.statusCode, headers: r.headers, body: Buffer.from(await r.body.arrayBuffer()) }
  }
  const head = await send('HEAD', '/head')
  t.equal(head.status, 200)
  t.equal(head.headers['content-length'], '12345', 'HEAD: content-length of the GET it describes')
  t.equal(head.headers['x-kind'], 'head')
  t.equal(head.body.length, 0, 'HEAD: no body')
  const noContent = await send('GET', '/204')
  t.equal(noContent.status, 204)
  t.equal(noContent.headers['x-kind'], 'no-content')
  t.equal(noContent.body.length, 0)
  const notModified = await send('GET', '/304', { 'if-none-match': '"v1"' })
  t.equal(notModified.status, 304)
  t.equal(notModified.headers.etag, '"v1"', '304: validators kept')
  t.equal(notModified.headers['cache-control'], 'max-age=60')
  t.equal(notModified.body.length, 0)
  const get = await send('GET', '/head')
  t.equal(get.body.length, 12345, 'GET after HEAD on the same connection: full body')
  t.equal((await send('GET', '/')).body.toString(), 'after')

  const curlHead = await curl(['-I', '-x', client.proxyUrl, 'http://web/head'])
  t.equal(curlHead.status, 200)
  t.equal(header(curlHead, 'content-length'), '12345', 'curl -I: content-length preserved')
})

t.test('Expect: 100-continue: the sidecar answers 100 itself and the body still reaches the app', async (t) => {
  const body = randomBytes(2 * 1024 * 1024)
  let sawExpect: string | undefined = 'not called'
  const app = await startApp(t, (req, res) => {
    sawExpect = req.headers.expect
    const h = createHash('sha256')
    req.on('data', (c: Buffer) => h.update(c))
    req.on('end', () => res.end(h.digest('hex')))
  })
  const client = await startPair(t, app.port)
  const file = join(mkdtempSync(join(tmpdir(), 'remora-http1-')), 'body.bin')
  writeFileSync(file, body)
  for (const args of [['-x', client.proxyUrl, 'http://web/upload'], ['-H', 'Host: web', `${client.proxyUrl}/upload`]]) {
    // A long expect timeout: without a 100 from the sidecar curl would stall 30 s before sending.
    const r = await curl(['-H', 'Expect: 100-continue', '--expect100-timeout', '30', '--data-binary', `@${file}`, ...args])
    t.match(r.statusLines[0], /^HTTP\/1\.1 100 /, `${args[0]}: curl got 100 Continue`)
    t.equal(r.status, 200)
    t.equal(r.body.toString(), sha256(body), `${args[0]}: the body reached the app`)
    t.equal(sawExpect, undefined, `${args[0]}: Expect is answered by the sidecar, not passed on`)
  }
})

t.test('trailers from the app reach an HTTP/1.1 client that sent TE: trailers', async (t) => {
  const app = await startApp(t, (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum, x-count' })
    res.write('part one,')
    res.write('part two')
    res.addTrailers({ 'x-checksum': sha256('part one,part two'), 'x-count': '2' })
    res.end()
  })
  const client = await startPair(t, app.port)
  for (const via of ['proxy', 'host'] as const) {
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const opts = via === 'proxy'
        ? { host: '127.0.0.1', port: client.ports.outbound, path: 'http://web/t', headers: { host: 'web', te: 'trailers' } }
        : { host: '127.0.0.1', port: client.ports.outbound, path: '/t', headers: { host: 'web', te: 'trailers' } }
      http.get({ ...opts, agent: false }, resolve).on('error', reject)
    })
    let text = ''
    res.setEncoding('utf8')
    for await (const c of res) text += c as string
    t.equal(text, 'part one,part two', `${via}: body`)
    t.same(res.trailers, { 'x-checksum': sha256('part one,part two'), 'x-count': '2' }, `${via}: trailers arrive after the body`)
  }
})

t.test('hop-by-hop headers do not reach the app or the client; end-to-end ones do', async (t) => {
  let seen: http.IncomingHttpHeaders = {}
  const app = await startApp(t, (req, res) => {
    seen = req.headers
    res.setHeader('connection', 'keep-alive, x-resp-hop')
    res.setHeader('x-resp-hop', 'connection-scoped')
    res.setHeader('keep-alive', 'timeout=1234')
    res.setHeader('x-resp-end', 'kept')
    res.end('ok')
  })
  const client = await startPair(t, app.port)
  for (const args of [['-x', client.proxyUrl, 'http://web/h'], ['-H', 'Host: web', `${client.proxyUrl}/h`]]) {
    const r = await curl([
      '-H', 'Connection: keep-alive, X-Named-Hop', '-H', 'X-Named-Hop: secret',
      '-H', 'Keep-Alive: timeout=99', '-H', 'Proxy-Connection: keep-alive', '-H', 'TE: gzip',
      '-H', 'Upgrade: h2c', '-H', 'X-End-To-End: kept', ...args,
    ])
    t.equal(r.status, 200, `${args[0]}: status`)
    for (const name of ['x-named-hop', 'keep-alive', 'proxy-connection', 'te', 'upgrade']) {
      t.equal(seen[name], undefined, `${args[0]}: ${name} does not reach the app`)
    }
    t.not(seen.connection, 'keep-alive, X-Named-Hop', `${args[0]}: the client's Connection header is not forwarded`)
    t.equal(seen['x-end-to-end'], 'kept', `${args[0]}: end-to-end header kept`)
    t.equal(header(r, 'x-resp-hop'), undefined, `${args[0]}: a response header named in Connection stays with the app`)
    t.not(header(r, 'keep-alive'), 'timeout=1234', `${args[0]}: the app's Keep-Alive is not relayed`)
    t.equal(header(r, 'x-resp-end'), 'kept', `${args[0]}: end-to-end response header kept`)
  }
})

t.test('several Set-Cookie headers survive as separate headers', async (t) => {
  const cookies = ['a=1; Path=/', 'b=2; HttpOnly', 'c=3; Expires=Wed, 21 Oct 2026 07:28:00 GMT']
  const app = await startApp(t, (_req, res) => { res.setHeader('set-cookie', cookies); res.end('ok') })
  const client = await startPair(t, app.port)
  for (const mode of modes(t, client)) {
    const r = await mode.send('GET', '/')
    t.same(r.headers['set-cookie'], cookies, mode.name)
  }
  const r = await curl(['-x', client.proxyUrl, 'http://web/'])
  t.same(r.headers.filter(([n]) => n === 'set-cookie').map(([, v]) => v), cookies, 'curl sees three Set-Cookie lines')
})

t.test('mesh headers sent by the client never reach the app and cannot redirect the request (remora-attempt is the mesh\'s own)', async (t) => {
  let seen: http.IncomingHttpHeaders = {}
  const app = await startApp(t, (req, res) => { seen = req.headers; res.end('the real app') })
  const client = await startPair(t, app.port)
  const forged = {
    'remora-target-port': '1',
    'remora-orig-proto': 'HTTP/2',
    'remora-client-id': 'spiffe://cluster.local/ns/test/sa/admin',
    'remora-attempt': '7',
    'remora-upgrade': 'websocket',
    'remora-proxy-error': 'forged',
  }
  for (const mode of modes(t, client)) {
    const r = await mode.send('GET', '/m', undefined, forged)
    t.equal(r.status, 200, `${mode.name}: status`)
    t.equal(r.body.toString(), 'the real app', `${mode.name}: routed by the mesh, not by a forged target port`)
    t.same(Object.keys(seen).filter((k) => k.startsWith('remora-') && k !== 'remora-attempt'), [], `${mode.name}: no forged remora-* header reaches the app`)
    t.equal(seen['remora-attempt'], '1', `${mode.name}: the app sees the mesh's attempt number, not the forged one`)
    t.equal(r.headers['remora-proxy-error'], undefined, `${mode.name}: no proxy error`)
  }
})

t.test('registry-only: an unknown authority gets 503 "unknown authority" with a body that says what to check', async (t) => {
  const app = await startApp(t, echo)
  const client = await startPair(t, app.port, { REMORA_OUTBOUND_POLICY: 'registry-only' })
  for (const args of [['-x', client.proxyUrl, 'http://nope.example/'], ['-H', 'Host: nope.example', `${client.proxyUrl}/`]]) {
    const r = await curl(args)
    t.equal(r.status, 503, `${args[0]}: status`)
    t.equal(header(r, 'remora-proxy-error'), 'unknown authority', `${args[0]}: reason header`)
    t.match(header(r, 'content-type'), /^text\/plain/, `${args[0]}: plain text`)
    t.match(r.body.toString(), /nope\.example/, `${args[0]}: names the authority`)
    t.match(r.body.toString(), /Check the Host/, `${args[0]}: says what to check`)
  }
  const agent = new ProxyAgent({ uri: client.proxyUrl })
  t.teardown(() => agent.close())
  const r = await agent.request({ origin: 'http://nope.example', path: '/', method: 'GET' })
  t.equal(r.statusCode, 503, 'undici ProxyAgent: status')
  t.equal(r.headers['remora-proxy-error'], 'unknown authority')
  t.match(await r.body.text(), /Check the Host/)
  const tunnel = await curl(['-p', '-x', client.proxyUrl, 'http://nope.example/'])
  t.not(tunnel.code, 0, 'curl CONNECT: the tunnel is refused')
  t.match(tunnel.stderr, /503/, 'curl CONNECT: reports the 503')
})

t.test('an app that is not listening gets 503 "app unavailable"', async (t) => {
  const deadPort = await freePort()
  const client = await startPair(t, deadPort)
  for (const args of [['-x', client.proxyUrl, 'http://web/'], ['-H', 'Host: web', `${client.proxyUrl}/`]]) {
    const r = await curl(args)
    t.equal(r.status, 503, `${args[0]}: status`)
    t.equal(header(r, 'remora-proxy-error'), 'app unavailable', `${args[0]}: reason header`)
    t.match(r.body.toString(), /Check that the app is running/, `${args[0]}: says what to check`)
  }
})

t.test('a malformed request gets 400 and the sidecar keeps serving', async (t) => {
  const app = await startApp(t, (_req, res) => res.end('still serving'))
  const client = await startPair(t, app.port)
  const bad = [
    ['space in the request target', 'GET /a b HTTP/1.1\r\nHost: web\r\n\r\n'],
    ['space in a header name', 'GET / HTTP/1.1\r\nHost: web\r\nBad Header: x\r\n\r\n'],
    ['control character in a header value', 'GET / HTTP/1.1\r\nHost: web\r\nX-Bad: a\x01b\r\n\r\n'],
    ['content-length with transfer-encoding', 'POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
    ['bad chunk size', 'POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'],
  ]
  for (const [what, bytes] of bad) {
    const res = parseResponses(await rawExchange(client.ports.outbound, bytes))
    t.equal(res.status, 400, `${what}: 400`)
    t.match(res.statusLines.join(), /HTTP\/1\.1 400/, `${what}: status line`)
    t.equal(res.headers.find(([n]) => n === 'remora-proxy-error')?.[1], 'malformed request', `${what}: reason header`)
    const next = await curl(['-H', 'Host: web', `${client.proxyUrl}/`])
    t.equal(next.body.toString(), 'still serving', `${what}: the next client is served`)
  }
})

t.test('a client that aborts mid-upload or mid-download cancels the request at the app', async (t) => {
  const events: Array<{ url: string, what: string }> = []
  const received = new Map<string, number>()
  const app = await startApp(t, (req, res) => {
    const url = req.url ?? ''
    req.once('close', () => { if (!req.complete) events.push({ url, what: 'request aborted' }) })
    req.once('end', () => events.push({ url, what: 'request body ended' }))
    res.once('close', () => { if (!res.writableFinished) events.push({ url, what: 'response closed early' }) })
    if (req.method === 'POST') { req.on('data', (c: Buffer) => { received.set(url, (received.get(url) ?? 0) + c.length) }); return }
    // An endless download: 64 KB every 20 ms until the caller goes away.
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    const timer = setInterval(() => res.write(Buffer.alloc(64 * 1024, 1)), 20)
    res.once('close', () => clearInterval(timer))
  })
  const client = await startPair(t, app.port)

  for (const [via, target, framing] of [
    ['Host header, content-length', '/up-host', 'sized'],
    ['absolute-form, content-length', 'http://web/up-proxy', 'sized'],
    ['Host header, chunked', '/up-chunked', 'chunked'],
  ] as const) {
    const url = target.startsWith('http') ? '/up-proxy' : target
    const socket = net.connect(client.ports.outbound, '127.0.0.1')
    await once(socket, 'connect')
    const piece = Buffer.alloc(256 * 1024, 2)
    if (framing === 'sized') {
      socket.write(`POST ${target} HTTP/1.1\r\nHost: web\r\nContent-Length: ${100 * 1024 * 1024}\r\n\r\n`)
      socket.write(piece)
    } else {
      socket.write(`POST ${target} HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n`)
      socket.write(`${piece.length.toString(16)}\r\n`)
      socket.write(piece)
      socket.write('\r\n')
    }
    // Everything sent so far has reached the app: the mesh is idle when the client goes away.
    await eventually(() => received.get(url) === piece.length, 10_000, `${via}: the first 256 KB reached the app`)
    socket.destroy()
    await eventually(() => events.some((e) => e.url === url && (e.what === 'request aborted' || e.what === 'request body ended')), 5_000, `${via}: the app hears of the abort`)
    const seen = events.filter((e) => e.url === url).map((e) => e.what)
    t.ok(seen.includes('request aborted'), `${via}: the app sees the upload aborted`)
    t.notOk(seen.includes('request body ended'), `${via}: the app never sees a complete (shorter) body`)
  }

  const agent = new ProxyAgent({ uri: client.proxyUrl })
  const conn = new Client(client.proxyUrl)
  t.teardown(async () => { await Promise.all([agent.close(), conn.close()]) })
  for (const [via, d, origin, headers, path] of [
    ['ProxyAgent', agent, 'http://web', {}, '/down-proxy'],
    ['Host header', conn, client.proxyUrl, { host: 'web' }, '/down-host'],
  ] as const) {
    const ac = new AbortController()
    const r = await d.request({ origin, path, method: 'GET', headers, signal: ac.signal })
    let got = 0
    try {
      for await (const c of r.body) {
        got += (c as Buffer).length
        if (got > 512 * 1024) ac.abort()
      }
    } catch { /* the abort itself */ }
    t.ok(got > 512 * 1024, `${via}: the download was flowing`)
    await eventually(() => events.some((e) => e.url === path && e.what === 'response closed early'), 5_000, `${via}: the app sees the download cancelled`)
    t.pass(`${via}: mid-download abort reached the app`)
  }
})

t.test('an app that dies mid-response leaves the client with an incomplete response, never a clean short one', async (t) => {
  const app = await startApp(t, (req, res) => {
    if (req.url === '/sized') res.setHeader('content-length', 10 * 1024 * 1024)
    res.writeHead(200)
    // Dies while bytes are still flowing, which is when a reset can lose the race to an end.
    const timer = setInterval(() => res.write(Buffer.alloc(64 * 1024, 3)), 2)
    setTimeout(() => { clearInterval(timer); req.socket.destroy() }, 150)
  })
  const client = await startPair(t, app.port)
  for (const path of ['/chunked', '/sized']) {
    for (const args of [['-x', client.proxyUrl, `http://web${path}`], ['-H', 'Host: web', `${client.proxyUrl}${path}`]]) {
      const r = await curl(args)
      t.equal(r.status, 200, `${path} ${args[0]}: the response had started`)
      t.not(r.code, 0, `${path} ${args[0]}: curl reports the transfer as failed (exit ${r.code}: ${r.stderr.trim()})`)
    }
    const conn = new Client(client.proxyUrl)
    const res = await conn.request({ origin: client.proxyUrl, path, method: 'GET', headers: { host: 'web' } })
    await t.rejects(res.body.arrayBuffer(), `${path} undici: reading the body fails`)
    await conn.destroy()
  }
})
