// Black-box: HTTP/2 with prior knowledge (node:http2 and curl) into the client sidecar, through the
// mesh to an HTTP/1.1 app and to an h2c app: bodies, trailers, many streams, resets both ways.
import t from 'tap'
import http from 'node:http'
import http2, { constants as h2c, type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2'
import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { EventEmitter, once } from 'node:events'
import net from 'node:net'
import { startMesh, freePort } from './harness/mesh.ts'

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

/** What the apps saw; the reset tests wait on these. */
const appEvents = new EventEmitter<{
  h2Open: [tag: string]
  h2Closed: [tag: string, rstCode: number, aborted: boolean, bodyEnded: boolean]
  h1Open: [tag: string]
  h1Closed: [tag: string, finished: boolean, bodyEnded: boolean]
}>()

function waitFor<K extends 'h2Open' | 'h2Closed' | 'h1Open' | 'h1Closed'> (event: K, tag: string, timeoutMs = 5_000): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { appEvents.off(event, listener as never); reject(new Error(`no ${event} for ${tag} within ${timeoutMs} ms`)) }, timeoutMs)
    const listener = (...args: unknown[]): void => {
      if (args[0] !== tag) return
      clearTimeout(timer)
      appEvents.off(event, listener as never)
      resolve(args)
    }
    appEvents.on(event, listener as never)
  })
}

/** HTTP/1.1 app: echoes the request; `/trailers` answers chunked with trailers; `/hang` never answers. */
function h1Handler (req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://app')
  const tag = url.searchParams.get('tag') ?? ''
  if (url.pathname === '/hang') {
    let bodyEnded = false
    req.once('end', () => { bodyEnded = true })
    res.once('close', () => appEvents.emit('h1Closed', tag, res.writableFinished, bodyEnded))
    req.once('data', () => appEvents.emit('h1Open', tag))
    if (req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined) appEvents.emit('h1Open', tag)
    req.resume()
    return
  }
  const chunks: Buffer[] = []
  req.on('data', (c: Buffer) => chunks.push(c))
  req.on('end', () => {
    const body = Buffer.concat(chunks)
    if (url.pathname === '/trailers') {
      res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum, x-length' })
      res.write('part one, ')
      res.write('part two')
      res.addTrailers({ 'x-checksum': sha256(Buffer.from('part one, part two')), 'x-length': '18' })
      res.end()
      return
    }
    res.writeHead(200, {
      'content-type': 'application/json',
      'x-app-http-version': req.httpVersion,
      'x-app-host': req.headers.host ?? '',
      'x-app-mesh-headers': Object.keys(req.headers).filter((k) => k.startsWith('remora-') && k !== 'remora-attempt').join(',') || 'none',
    })
    res.end(JSON.stringify({ method: req.method, url: req.url, length: body.length, sha: sha256(body), echo: body.length <= 1024 ? body.toString() : '' }))
  })
}

/** h2c app: echoes with trailers; `/hang`, `/slow` and `/reset-*` serve the cancellation tests. */
function h2Handler (stream: http2.ServerHttp2Stream, headers: IncomingHttpHeaders): void {
  const url = new URL(headers[':path'] ?? '/', 'http://app')
  const tag = url.searchParams.get('tag') ?? ''
  stream.on('error', () => { /* resets are what some tests are about */ })
  switch (url.pathname) {
    case '/hang':
    case '/slow': {
      // node also emits 'end' after a reset; only an end before any abort is END_STREAM.
      let bodyEnded = false
      stream.once('end', () => { bodyEnded = !stream.aborted && stream.rstCode === undefined })
      stream.once('close', () => appEvents.emit('h2Closed', tag, stream.rstCode, stream.aborted, bodyEnded))
      // With a request body, "open" means the first bytes arrived.
      if (stream.endAfterHeaders) appEvents.emit('h2Open', tag)
      else stream.once('data', () => appEvents.emit('h2Open', tag))
      stream.resume()
      if (url.pathname === '/slow') {
        stream.respond({ ':status': 200, 'content-type': 'text/plain' })
        stream.write('first chunk\n')
      }
      return
    }
    case '/reset-before-headers':
      stream.close(h2c.NGHTTP2_INTERNAL_ERROR)
      return
    case '/reset-after-headers':
      stream.respond({ ':status': 200 })
      stream.write('partial')
      // close(code) would half-close first (END_STREAM, then RST_STREAM); destroy() only resets.
      setTimeout(() => stream.destroy(new Error('the app gives up')), 50)
      return
  }
  const chunks: Buffer[] = []
  let requestTrailers: IncomingHttpHeaders | undefined
  stream.on('trailers', (h: IncomingHttpHeaders) => { requestTrailers = h })
  stream.on('data', (c: Buffer) => chunks.push(c))
  stream.on('end', () => {
    const body = Buffer.concat(chunks)
    stream.respond({
      ':status': 200,
      'content-type': 'application/octet-stream',
      'x-app-authority': headers[':authority'] ?? '',
      'x-app-mesh-headers': Object.keys(headers).filter((k) => k.startsWith('remora-') && k !== 'remora-attempt').join(',') || 'none',
      'x-app-method': headers[':method'] ?? '',
    }, { waitForTrailers: true })
    stream.once('wantTrailers', () => stream.sendTrailers({
      'x-checksum': sha256(body),
      'x-length': String(body.length),
      'x-request-trailer': String(requestTrailers?.['x-client-trailer'] ?? 'none'),
    }))
    stream.end(body)
  })
}

interface H2Result {
  status: number
  headers: IncomingHttpHeaders
  body: Buffer
  trailers?: IncomingHttpHeaders
  rstCode: number
  error?: NodeJS.ErrnoException
}

/**
 * One request on an open h2 session; settles when the stream closes, however it closes. Body
 * `{ signal }`: the request body stays open for `onStream` to write and end (it then gets
 * 'wantTrailers'); the signal resets the stream.
 */
function h2request (session: ClientHttp2Session, headers: OutgoingHttpHeaders, body?: Buffer | { signal: AbortSignal }, onStream?: (s: http2.ClientHttp2Stream) => void): Promise<H2Result> {
  return new Promise((resolve) => {
    const open = body !== undefined && !Buffer.isBuffer(body)
    const stream = session.request(headers, { endStream: body === undefined, signal: open ? body.signal : undefined, waitForTrailers: open })
    const result: H2Result = { status: 0, headers: {}, body: Buffer.alloc(0), rstCode: 0 }
    const chunks: Buffer[] = []
    stream.on('response', (h) => { result.status = Number(h[':status']); result.headers = h })
    stream.on('data', (c: Buffer) => chunks.push(c))
    stream.on('trailers', (h) => { result.trailers = h })
    stream.on('error', (err: NodeJS.ErrnoException) => { result.error = err })
    stream.on('close', () => {
      result.body = Buffer.concat(chunks)
      result.rstCode = stream.rstCode ?? 0
      resolve(result)
    })
    if (Buffer.isBuffer(body)) stream.end(body)
    onStream?.(stream)
  })
}

function curl (args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  return new Promise((resolve) => {
    // A clean environment: no *_proxy variable may send curl elsewhere.
    execFile('curl', ['-sS', ...args], { env: { PATH: process.env.PATH }, timeout: 30_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1
      resolve({ code, stdout, stderr })
    })
  })
}

const h1Port = await freePort()
const h2Port = await freePort()
const h1App = http.createServer(h1Handler).listen(h1Port, '127.0.0.1')
const h2App = http2.createServer().on('stream', h2Handler).listen(h2Port, '127.0.0.1')
await Promise.all([once(h1App, 'listening'), once(h2App, 'listening')])
t.teardown(() => {
  h1App.closeAllConnections()
  h1App.close()
  h2App.close()
})

const mesh = await startMesh(t, {
  workloads: {
    client: { appPorts: [1] },
    server: { appPorts: [{ port: h1Port, protocol: 'http1' }, { port: h2Port, protocol: 'http2' }] },
  },
  services: [
    { name: 'web', port: 80, protocol: 'http1', endpoints: [{ workload: 'server', targetPort: h1Port }] },
    { name: 'api', port: 8080, protocol: 'http2', endpoints: [{ workload: 'server', targetPort: h2Port }] },
  ],
}, { env: { REMORA_OUTBOUND_POLICY: 'registry-only' } }) // unknown authorities are refused, not passed through
const outbound = mesh.sidecar('client').ports.outbound

/** A prior-knowledge h2c connection to the client sidecar, closed at teardown. */
async function connect (t: { teardown (fn: () => unknown): void }): Promise<ClientHttp2Session> {
  const session = http2.connect(`http://127.0.0.1:${outbound}`)
  session.on('error', () => { /* reported per stream */ })
  t.teardown(() => { session.destroy() })
  await once(session, 'connect')
  return session
}

t.test('node:http2 client → HTTP/1.1 app: request and response bodies, the app speaks HTTP/1.1', async (t) => {
  const session = await connect(t)
  const get = await h2request(session, { ':method': 'GET', ':path': '/a/b?c=d', ':authority': 'web', 'x-custom': 'yes' })
  t.equal(get.status, 200)
  t.equal(get.headers['x-app-http-version'], '1.1', 'the inbound sidecar speaks HTTP/1.1 to an http1 app port')
  t.equal(get.headers['x-app-host'], 'web', 'the app sees the :authority as Host')
  t.equal(get.headers['x-app-mesh-headers'], 'none', 'mesh headers never reach the app')
  t.match(JSON.parse(get.body.toString()), { method: 'GET', url: '/a/b?c=d', length: 0 })

  const big = randomBytes(1024 * 1024 + 3)
  const post = await h2request(session, { ':method': 'POST', ':path': '/upload', ':authority': 'web.test:80', 'content-type': 'application/octet-stream' }, big)
  t.equal(post.status, 200)
  t.match(JSON.parse(post.body.toString()), { method: 'POST', url: '/upload', length: big.length, sha: sha256(big) })
})

t.test('node:http2 client → HTTP/1.1 app: chunked trailers from the app reach the h2 client', async (t) => {
  const session = await connect(t)
  const res = await h2request(session, { ':method': 'GET', ':path': '/trailers', ':authority': 'web' })
  t.equal(res.status, 200)
  t.equal(res.body.toString(), 'part one, part two')
  t.equal(res.trailers?.['x-checksum'], sha256(Buffer.from('part one, part two')))
  t.equal(res.trailers?.['x-length'], '18')
})

t.test('node:http2 client → h2c app: bodies, :authority and response trailers', async (t) => {
  const session = await connect(t)
  const body = randomBytes(3 * 1024 * 1024)
  const res = await h2request(session, { ':method': 'PUT', ':path': '/echo', ':authority': 'api:8080' }, body)
  t.equal(res.status, 200)
  t.equal(res.rstCode, h2c.NGHTTP2_NO_ERROR)
  t.equal(res.headers['x-app-authority'], 'api:8080')
  t.equal(res.headers['x-app-method'], 'PUT')
  t.equal(res.headers['x-app-mesh-headers'], 'none', 'mesh headers never reach the app')
  t.ok(res.body.equals(body), 'the 3 MiB echo is byte-exact')
  t.equal(res.trailers?.['x-checksum'], sha256(body), 'response trailers cross both sidecars')
  t.equal(res.trailers?.['x-length'], String(body.length))

  const empty = await h2request(session, { ':method': 'GET', ':path': '/echo', ':authority': 'api:8080' })
  t.equal(empty.status, 200)
  t.equal(empty.body.length, 0)
  t.equal(empty.trailers?.['x-length'], '0', 'trailers after an empty body')
})

t.test('request trailers from an h2 client reach the h2c app', async (t) => {
  const session = await connect(t)
  const res = await h2request(session, { ':method': 'POST', ':path': '/echo', ':authority': 'api:8080' }, { signal: new AbortController().signal }, (s) => {
    s.once('wantTrailers', () => s.sendTrailers({ 'x-client-trailer': 'sent last' }))
    s.end('body before trailers')
  })
  t.equal(res.status, 200)
  t.equal(res.body.toString(), 'body before trailers')
  t.equal(res.trailers?.['x-request-trailer'], 'sent last', 'the app saw the request trailers')
})

t.test('request trailers from an HTTP/1.1 client reach the h2c app', async (t) => {
  const socket = net.connect(outbound, '127.0.0.1')
  socket.write('POST /echo HTTP/1.1\r\nHost: api:8080\r\nTransfer-Encoding: chunked\r\nTrailer: x-client-trailer\r\nConnection: close\r\n\r\n' +
    '5\r\nhello\r\n0\r\nx-client-trailer: from http1\r\n\r\n')
  const chunks: Buffer[] = []
  socket.on('data', (c: Buffer) => chunks.push(c))
  await once(socket, 'end')
  socket.destroy()
  const raw = Buffer.concat(chunks).toString('latin1')
  t.match(raw, /^HTTP\/1\.1 200 /)
  t.match(raw, /\r\n5\r\nhello\r\n0\r\n/, 'the body, chunked back')
  t.match(raw, /\r\nx-request-trailer: from http1\r\n/, 'the app saw the request trailer, and its response trailers came back')
})

t.test('500 concurrent streams on one connection all complete correctly', async (t) => {
  const session = await connect(t)
  const n = 500
  const toH2 = Array.from({ length: n }, (_, i) => {
    const body = Buffer.from(`stream ${i} `.repeat(1 + (i % 50)))
    return h2request(session, { ':method': 'POST', ':path': `/echo?i=${i}`, ':authority': 'api:8080' }, body)
      .then((r) => r.status === 200 && r.body.equals(body) && r.trailers?.['x-checksum'] === sha256(body) && r.rstCode === 0)
  })
  const toH1 = Array.from({ length: n }, (_, i) => {
    const body = Buffer.from(`h1 stream ${i}`)
    return h2request(session, { ':method': 'POST', ':path': `/echo?i=${i}`, ':authority': 'web' }, body)
      .then((r) => {
        if (r.status !== 200) return false
        const json = JSON.parse(r.body.toString()) as { url: string, echo: string }
        return json.url === `/echo?i=${i}` && json.echo === body.toString()
      })
  })
  const h2ok = await Promise.all(toH2)
  const h1ok = await Promise.all(toH1)
  t.equal(h2ok.filter(Boolean).length, n, 'every stream to the h2c app got its own body and trailers')
  t.equal(h1ok.filter(Boolean).length, n, 'every stream to the HTTP/1.1 app got its own answer')
})

t.test('client RST_STREAM reaches the h2c app as a stream reset', async (t) => {
  const session = await connect(t)

  const beforeHeaders = 'cancel-before-headers'
  const open = waitFor('h2Open', beforeHeaders)
  const closed = waitFor('h2Closed', beforeHeaders)
  const pending = h2request(session, { ':method': 'GET', ':path': `/hang?tag=${beforeHeaders}`, ':authority': 'api:8080' }, undefined, (s) => {
    void open.then(() => s.close(h2c.NGHTTP2_CANCEL))
  })
  const [, rstCode, aborted] = await closed
  t.equal(rstCode, h2c.NGHTTP2_CANCEL, 'the app stream was reset with CANCEL')
  t.equal(aborted, true, 'the app stream was aborted, not ended')
  t.equal((await pending).rstCode, h2c.NGHTTP2_CANCEL)

  const midBody = 'cancel-mid-body'
  const closed2 = waitFor('h2Closed', midBody)
  const res = await h2request(session, { ':method': 'GET', ':path': `/slow?tag=${midBody}`, ':authority': 'api:8080' }, undefined, (s) => {
    s.once('data', () => s.close(h2c.NGHTTP2_CANCEL))
  })
  t.equal(res.status, 200)
  t.equal(res.body.toString(), 'first chunk\n')
  const [, rstCode2] = await closed2
  t.equal(rstCode2, h2c.NGHTTP2_CANCEL, 'a reset after the response started reaches the app too')
  t.equal(session.closed, false, 'the client connection survives its own resets')

  // A reset in the middle of a request body must not reach the app as a complete (short) body.
  // close(CANCEL) would half-close first; an aborted signal sends a bare RST_STREAM(CANCEL).
  const midUpload = 'cancel-mid-upload'
  const open3 = waitFor('h2Open', midUpload)
  const closed3 = waitFor('h2Closed', midUpload)
  const cancel = new AbortController()
  void h2request(session, { ':method': 'POST', ':path': `/hang?tag=${midUpload}`, ':authority': 'api:8080' }, { signal: cancel.signal }, (s) => {
    s.write(Buffer.alloc(64 * 1024, 1))
    void open3.then(() => cancel.abort())
  })
  const [, rstCode3, aborted3, bodyEnded3] = await closed3
  t.equal(bodyEnded3, false, 'the app never saw the truncated request body end cleanly')
  t.equal(rstCode3, h2c.NGHTTP2_CANCEL)
  t.equal(aborted3, true)
})

t.test('client RST_STREAM reaches an HTTP/1.1 app as a closed request', async (t) => {
  const session = await connect(t)
  const tag = 'cancel-h1'
  const open = waitFor('h1Open', tag)
  const closed = waitFor('h1Closed', tag)
  void h2request(session, { ':method': 'GET', ':path': `/hang?tag=${tag}`, ':authority': 'web' }, undefined, (s) => {
    void open.then(() => s.close(h2c.NGHTTP2_CANCEL))
  })
  const [, finished] = await closed
  t.equal(finished, false, 'the app saw its request go away before it answered')

  // A reset in the middle of a request body must not reach the app as a complete (short) body.
  const midUpload = 'cancel-h1-mid-upload'
  const open2 = waitFor('h1Open', midUpload)
  const closed2 = waitFor('h1Closed', midUpload)
  const cancel = new AbortController()
  void h2request(session, { ':method': 'POST', ':path': `/hang?tag=${midUpload}`, ':authority': 'web' }, { signal: cancel.signal }, (s) => {
    s.write(Buffer.alloc(64 * 1024, 1))
    void open2.then(() => cancel.abort())
  })
  const [, finished2, bodyEnded2] = await closed2
  t.equal(finished2, false)
  t.equal(bodyEnded2, false, 'the app never saw the truncated request body end cleanly')
})

t.test('an app RST_STREAM reaches the client', async (t) => {
  const session = await connect(t)
  const after = await h2request(session, { ':method': 'GET', ':path': '/reset-after-headers', ':authority': 'api:8080' })
  t.equal(after.status, 200)
  t.equal(after.body.toString(), 'partial')
  t.not(after.rstCode, h2c.NGHTTP2_NO_ERROR, `the client stream was reset (code ${after.rstCode})`)
  t.equal(after.trailers, undefined, 'no trailers: the response did not complete')
  t.equal(after.error?.code, 'ERR_HTTP2_STREAM_ERROR')

  // Before any response the proxy can still answer, so the reset becomes a 502 with the reason.
  const before = await h2request(session, { ':method': 'GET', ':path': '/reset-before-headers', ':authority': 'api:8080' })
  t.equal(before.status, 502)
  t.equal(before.headers['remora-proxy-error'], 'app reset')

  const again = await h2request(session, { ':method': 'GET', ':path': '/echo', ':authority': 'api:8080' })
  t.equal(again.status, 200, 'the connection still serves new streams after resets')
})

t.test('curl --http2-prior-knowledge through the client sidecar', async (t) => {
  const connectTo = (name: string, port: number): string[] => ['--connect-to', `${name}:${port}:127.0.0.1:${outbound}`]
  const h1 = await curl(['--http2-prior-knowledge', '-D', '-', ...connectTo('web', 80), '--data-binary', 'hello from curl', 'http://web/curl?x=1'])
  t.equal(h1.code, 0, h1.stderr)
  t.match(h1.stdout, /^HTTP\/2 200 ?\r\n/, 'curl spoke HTTP/2 to the sidecar')
  t.match(h1.stdout, /x-app-http-version: 1\.1\r\n/)
  t.match(h1.stdout, /"url":"\/curl\?x=1"/)
  t.match(h1.stdout, /"echo":"hello from curl"/)

  const h2 = await curl(['--http2-prior-knowledge', '-D', '-', ...connectTo('api', 8080), '--data-binary', 'to the h2 app', 'http://api:8080/echo'])
  t.equal(h2.code, 0, h2.stderr)
  t.match(h2.stdout, /^HTTP\/2 200 ?\r\n/)
  t.match(h2.stdout, /x-app-authority: api:8080\r\n/)
  t.match(h2.stdout, /\r\n\r\nto the h2 app/)
  t.match(h2.stdout, /to the h2 appx-checksum: [0-9a-f]{64}\r\nx-length: 13\r\nx-request-trailer: none\r\n$/, 'curl prints the trailers after the body')

  const unknown = await curl(['--http2-prior-knowledge', '-D', '-', ...connectTo('nowhere', 80), 'http://nowhere/'])
  t.equal(unknown.code, 0, unknown.stderr)
  t.match(unknown.stdout, /^HTTP\/2 503 ?\r\n/)
  t.match(unknown.stdout, /remora-proxy-error: unknown authority\r\n/)
})
