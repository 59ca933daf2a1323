// Hardening (issue 18): h2c upgrade smuggling (defect 6), Upgrade requests that leak requests and
// sockets when their client hangs up (defect 7), and mesh headers forged from outside the mesh
// (defect 8). Raw sockets and real clients against two real sidecars and a recording app.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { once } from 'node:events'
import http from 'node:http'
import http2 from 'node:http2'
import net from 'node:net'
import type { Duplex } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { MeshHeader } from '../src/http/headers.ts'
import { eventually, pairSpec, startMesh, type SidecarProcess, type Teardown } from './harness/mesh.ts'
import { startApp } from './harness/apps.ts'
import { parseResponses, rawExchange } from './harness/http.ts'
import { scrapeMetrics, value } from './harness/metrics.ts'

interface Seen { method: string, url: string, headers: http.IncomingHttpHeaders, body: string }

/**
 * An app that switches protocols for every upgrade it is offered (h2c included: after its 101 it
 * echoes raw bytes, a stand-in for the HTTP/2 server it would run), answers plain requests with
 * what it saw, and for `/hang` never answers at all.
 */
async function startRecordingApp (t: Teardown): Promise<{ port: number, requests: Seen[], upgrades: Seen[], server: http.Server }> {
  const requests: Seen[] = []
  const upgrades: Seen[] = []
  const app = await startApp(t, (req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString() })
      if (req.url === '/hang') return
      res.end(`plain ${req.method} ${req.url}`)
    })
  })
  app.server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    upgrades.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: head.toString() })
    // Never answers, but closes when the other end does (as a careful app would).
    if (req.url === '/hang') { socket.resume(); socket.once('end', () => socket.destroy()); return }
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: ${req.headers.upgrade}\r\n\r\n`)
    socket.pipe(socket)
  })
  return { port: app.port, requests, upgrades, server: app.server }
}

async function pair (t: Teardown, appPort: number): Promise<{ client: SidecarProcess, web: SidecarProcess }> {
  const mesh = await startMesh(t, pairSpec(appPort, { appProtocol: 'http1' }))
  return { client: mesh.sidecar('client'), web: mesh.sidecar('web') }
}

function accessLines (s: SidecarProcess, path: string): Array<Record<string, unknown>> {
  return s.logs().filter((l) => l.access !== undefined && l.path === path)
}

/** Sockets to or from `port` still open in the kernel (ESTAB, CLOSE-WAIT, …; not TIME-WAIT, which is closed). */
function openSockets (port: number): number {
  const out = execFileSync('ss', ['-Htan', `( sport = :${port} or dport = :${port} )`], { encoding: 'utf8' })
  return out.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('TIME-WAIT') && !l.startsWith('LISTEN')).length
}

t.test('defect 6: an h2c upgrade goes on as a plain request, logged, and never becomes a tunnel', async (t) => {
  const app = await startRecordingApp(t)
  const { client, web } = await pair(t, app.port)
  const settings = 'AAMAAABkAARAAAAAAAIAAAAA'
  for (const [what, bytes, path, body] of [
    ['GET', `GET /h2c-get HTTP/1.1\r\nhost: web\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: ${settings}\r\n\r\n`, '/h2c-get', ''],
    ['POST with a body', `POST /h2c-post HTTP/1.1\r\nhost: web\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: ${settings}\r\ncontent-length: 5\r\n\r\nhello`, '/h2c-post', 'hello'],
    ['offered alongside websocket', `GET /h2c-both HTTP/1.1\r\nhost: web\r\nconnection: Upgrade\r\nupgrade: websocket, h2c\r\n\r\n`, '/h2c-both', ''],
  ] as const) {
    // The bytes after the request would be the client's HTTP/2 preface inside the tunnel.
    const raw = await rawExchange(client.ports.outbound, bytes + 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 2_000)
    const res = parseResponses(raw)
    t.equal(res.status, 200, `${what}: the app's plain answer, not a 101 (${res.statusLines.join(' | ')})`)
    t.equal(res.body.subarray(0, `plain `.length).toString(), 'plain ', `${what}: the app answered it as a plain request`)
    const seen = app.requests.find((r) => r.url === path)
    t.ok(seen !== undefined, `${what}: the app got a plain request`)
    t.equal(seen?.headers.upgrade, undefined, `${what}: without Upgrade`)
    t.equal(seen?.headers['http2-settings'], undefined, `${what}: without HTTP2-Settings`)
    t.equal(seen?.body, body, `${what}: with its body`)
    t.notOk(app.upgrades.some((u) => u.url === path), `${what}: the app was never offered the upgrade`)
    await eventually(() => accessLines(client, path).length === 1 && accessLines(web, path).length === 1, 5_000, `${what}: logged by both sidecars`)
    t.equal(accessLines(web, path)[0].status, 200, `${what}: the inbound access line`)
  }
  // The inbound listener, from a client outside the mesh, the same.
  const raw = await rawExchange(web.ports.inbound, `GET /h2c-inbound HTTP/1.1\r\nhost: web\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: ${settings}\r\n\r\n`, 2_000)
  t.equal(parseResponses(raw).status, 200, 'inbound: a plain answer')
  t.notOk(app.upgrades.some((u) => u.url === '/h2c-inbound'), 'inbound: no upgrade offered to the app')
  t.equal(app.requests.find((r) => r.url === '/h2c-inbound')?.headers.upgrade, undefined, 'inbound: without Upgrade')

  // WebSocket (allowed by default) still switches.
  const ws = net.connect(client.ports.outbound, '127.0.0.1')
  ws.write('GET /ws HTTP/1.1\r\nhost: web\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')
  let got = ''
  ws.on('data', (c: Buffer) => { got += c.toString('latin1') })
  await eventually(() => got.includes('\r\n\r\n'), 5_000, 'the 101')
  t.match(got, /^HTTP\/1\.1 101 /, 'a websocket upgrade still switches')
  ws.write('ping')
  await eventually(() => got.endsWith('ping'), 5_000, 'the echo through the tunnel')
  ws.destroy()
})

t.test('defect 7: an Upgrade request whose client hangs up ends on both sidecars, with no socket left', async (t) => {
  const app = await startRecordingApp(t)
  const { client, web } = await pair(t, app.port)
  const cases = [
    // A body the client never finishes: a plain request now, which ends when the client goes.
    ['websocket with a Content-Length body', 'POST /hang HTTP/1.1\r\nhost: web\r\nconnection: Upgrade\r\nupgrade: websocket\r\ncontent-length: 10\r\n\r\nabc'],
    // No body; the app never answers the upgrade; the client gives up.
    ['websocket the app never answers', 'GET /hang HTTP/1.1\r\nhost: web\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'],
  ] as const
  for (const [what, bytes] of cases) {
    const before = accessLines(client, '/hang').length
    const socket = net.connect(client.ports.outbound, '127.0.0.1')
    socket.on('error', () => {})
    await once(socket, 'connect')
    socket.write(bytes)
    // Until both sidecars hold the request (the app has seen it, as a request or an upgrade).
    await eventually(async () => value(await scrapeMetrics(web.adminUrl), 'remora_requests_in_flight') === 1, 5_000, `${what}: in flight on the inbound sidecar`)
    await sleep(200)
    socket.end()
    socket.destroy()
    for (const s of [client, web]) {
      await eventually(async () => value(await scrapeMetrics(s.adminUrl), 'remora_requests_in_flight') === 0, 5_000, `${what}: ${s.name}'s in-flight gauge back to 0`)
    }
    await eventually(() => openSockets(client.ports.outbound) === 0, 5_000, `${what}: no socket left on the outbound listener`)
    const families = await scrapeMetrics(client.adminUrl)
    t.equal(value(families, 'remora_tcp_connections_opened_total', { direction: 'outbound' }) - value(families, 'remora_tcp_connections_closed_total', { direction: 'outbound' }), 0, `${what}: the outbound listener counts every connection closed`)
    await eventually(() => openSockets(app.port) === 0, 5_000, `${what}: no connection to the app left open`)
    t.equal(accessLines(client, '/hang').length, before + 1, `${what}: logged once by the client sidecar`)
    t.pass(`${what}: both sidecars ended the request`)
  }
  t.equal(accessLines(web, '/hang').length, cases.length, 'each logged once by the inbound sidecar')
})

t.test('defect 8: no remora-* header from outside the mesh reaches the app, on any listener or protocol', async (t) => {
  const seen = new Map<string, http.IncomingHttpHeaders>()
  const app = await startApp(t, (req, res) => {
    req.resume()
    req.on('end', () => { seen.set(String(req.headers['x-row']), req.headers); res.end('ok') })
  })
  const { client, web } = await pair(t, app.port)
  const names = Object.values(MeshHeader)
  const forged = (name: string): string => name === MeshHeader.targetPort ? String(app.port) : name === MeshHeader.origProto ? 'HTTP/1.1' : name === MeshHeader.upgrade ? 'websocket' : 'forged'
  // Each mesh header alone, then all together. With mTLS off the inbound listener takes a request
  // naming remora-target-port for a peer sidecar's (HTTP/1.1 or h2c: nothing tells them apart), so
  // there "all" leaves that one out.
  const rows = (inbound: boolean): Array<[string, Record<string, string>]> => [
    ...names.map((n): [string, Record<string, string>] => [n, { [n]: forged(n) }]),
    ['all', Object.fromEntries(names.filter((n) => !inbound || n !== MeshHeader.targetPort).map((n) => [n, forged(n)]))],
  ]
  const h1 = async (port: number, host: string, headers: Record<string, string>): Promise<number> => {
    const req = http.request({ host: '127.0.0.1', port, path: '/', headers: { host, ...headers }, agent: false })
    req.end()
    const [res] = await once(req, 'response') as [http.IncomingMessage]
    res.resume()
    await once(res, 'end')
    return res.statusCode ?? 0
  }
  const h2 = async (port: number, authority: string, headers: Record<string, string>): Promise<number> => {
    const session = http2.connect(`http://127.0.0.1:${port}`)
    try {
      const stream = session.request({ ':authority': authority, ':path': '/', ...headers })
      const [head] = await once(stream, 'response') as [http2.IncomingHttpHeaders]
      stream.resume()
      await once(stream, 'end')
      return Number(head[':status'])
    } finally { session.close() }
  }
  const listeners: Array<[string, (h: Record<string, string>) => Promise<number>, boolean, boolean]> = [
    ['outbound HTTP/1.1', (h) => h1(client.ports.outbound, 'web', h), true, false],
    ['outbound h2c', (h) => h2(client.ports.outbound, 'web', h), true, false],
    ['inbound HTTP/1.1', (h) => h1(web.ports.inbound, 'web', h), false, true],
    ['inbound h2c', (h) => h2(web.ports.inbound, 'web', h), false, true],
  ]
  for (const [listener, send, viaMesh, inbound] of listeners) {
    for (const [row, headers] of rows(inbound)) {
      const key = `${listener} ${row}`
      const status = await send({ ...headers, 'x-row': key })
      t.equal(status, 200, `${key}: answered`)
      const got = seen.get(key) ?? {}
      const mesh = Object.entries(got).filter(([k]) => k.startsWith('remora-'))
      // The mesh sets remora-attempt itself when the request crossed two sidecars; nothing else.
      t.same(mesh, viaMesh ? [[MeshHeader.attempt, '1']] : [], `${key}: the app sees only what the mesh sets`)
      t.equal(got.upgrade, undefined, `${key}: no upgrade reaches the app`)
    }
  }
})

t.test('fuzz finding: an upgrade request with a Trailer header is carried, not a crash', async (t) => {
  const app = await startRecordingApp(t)
  const { client, web } = await pair(t, app.port)
  // node refuses to send a Trailer header without chunked framing, by throwing: it killed the sidecar.
  const raw = await rawExchange(client.ports.outbound, 'GET /ws-trailer HTTP/1.1\r\nhost: web\r\nconnection: Upgrade\r\nupgrade: websocket\r\ntrailer: x-checksum\r\n\r\nping', 2_000)
  t.match(raw.toString('latin1'), /^HTTP\/1\.1 101 /, 'the upgrade switched')
  t.equal(app.upgrades.find((u) => u.url === '/ws-trailer')?.headers.trailer, undefined, 'the app was offered it without the Trailer header (no body, no trailers)')
  for (const s of [client, web]) {
    t.equal(s.proc.exitCode, null, `${s.name}: still running`)
    await eventually(async () => value(await scrapeMetrics(s.adminUrl), 'remora_requests_in_flight') === 0, 5_000, `${s.name}: nothing in flight`)
  }
})
