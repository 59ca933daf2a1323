// Opaque TCP through two sidecars (plaintext and mTLS), reached as an app behind HTTP_PROXY reaches
// it: a CONNECT tunnel. Server-first apps answer with no client byte; half-close, egress and
// registry-only are what a user sees (no iptables here: test/netns/* covers redirection).
import t, { type Test } from 'tap'
import net from 'node:net'
import http from 'node:http'
import tls from 'node:tls'
import { eventually, freePort, startMesh, type MeshSpec, type SidecarProcess, type Teardown } from '../harness/mesh.ts'
import { startSecureMesh } from '../harness/control.ts'
import { metric } from '../harness/metrics.ts'

/** A server-speaks-first app (as MySQL, SMTP, NATS): greets, echoes upper-cased, says bye when the client half-closes. */
async function startServerFirst (t: Teardown): Promise<number> {
  const port = await freePort()
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {})
    s.write('220 ready\n')
    s.on('data', (d) => s.write(d.toString().toUpperCase()))
    s.on('end', () => s.end('bye\n'))
  })
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  t.teardown(() => { server.close() })
  return port
}

/** Opens a CONNECT tunnel through the sidecar; resolves with the socket (status 200) or the refusal. */
function connect (proxy: SidecarProcess, authority: string, host = '127.0.0.1'): Promise<{ socket: net.Socket } | { status: number, headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port: proxy.ports.outbound, method: 'CONNECT', path: authority })
    req.once('connect', (res, socket, head) => {
      if (res.statusCode !== 200) { socket.destroy(); resolve({ status: res.statusCode ?? 0, headers: res.headers }); return }
      if (head.length > 0) socket.unshift(head)
      resolve({ socket })
    })
    req.once('error', reject)
    req.end()
  })
}

/** Reads from `socket` until `text` has arrived (or the socket ends); what came so far. */
function readUntil (socket: net.Socket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = ''
    const onData = (d: Buffer): void => { got += d.toString(); if (got.includes(text)) done() }
    const done = (): void => { socket.off('data', onData); socket.off('end', done); resolve(got) }
    socket.on('data', onData)
    socket.once('end', done)
    socket.once('error', reject)
  })
}

/** Waits for an access-log line (written when its connection ends). */
async function waitForLog (sidecar: SidecarProcess, match: (l: Record<string, unknown>) => boolean): Promise<void> {
  await eventually(() => sidecar.logs().some(match), 30_000, 'the access-log line')
}

function spec (serverFirst: number, declaredOpaque: number): MeshSpec {
  return {
    workloads: {
      client: { appPorts: [1] },
      db: { appPorts: [serverFirst, { port: declaredOpaque, protocol: 'opaque' as 'auto' }] },
    },
    services: [
      // 3306 is a server-first port by default; 7000 is not, so it is declared opaque.
      { name: 'db', port: 3306, endpoints: [{ workload: 'db', targetPort: serverFirst }] },
      { name: 'queue', port: 7000, protocol: 'opaque' as 'auto', endpoints: [{ workload: 'db', targetPort: declaredOpaque }] },
    ],
  }
}

async function conversation (t: Test, client: SidecarProcess, authority: string, host?: string): Promise<void> {
  const opened = await connect(client, authority, host)
  if (!('socket' in opened)) { t.fail(`CONNECT ${authority} refused: ${opened.status}`); return }
  const { socket } = opened
  // The server speaks first: its greeting must come without the client sending a byte.
  t.equal(await readUntil(socket, '\n'), '220 ready\n', `${authority}: the server's greeting arrives before the client says anything`)
  socket.write('hello\n')
  t.equal(await readUntil(socket, 'HELLO\n'), 'HELLO\n', `${authority}: bytes both ways`)
  // Half-close: the client is done writing, the server still answers, then both ends close.
  socket.end()
  t.equal(await readUntil(socket, 'bye\n'), 'bye\n', `${authority}: after the client's FIN the server's last words still arrive`)
  await new Promise((resolve) => socket.once('close', resolve))
}

for (const mode of ['plaintext', 'mTLS'] as const) {
  t.test(`opaque TCP between sidecars (${mode}): server-first ports and services declared opaque, half-close, L4 metrics`, async (t) => {
    const serverFirst = await startServerFirst(t)
    const declared = await startServerFirst(t)
    const mesh = mode === 'mTLS' ? (await startSecureMesh(t, spec(serverFirst, declared))).mesh : await startMesh(t, spec(serverFirst, declared))
    const client = mesh.sidecar('client')
    await conversation(t, client, 'db:3306')
    await conversation(t, client, 'queue.test:7000')
    // The outbound listener's IPv6 twin ([::1], where iptables redirects IPv6): the same service.
    if (mode === 'plaintext') await conversation(t, client, 'queue.test:7000', '::1')
    const opened = await metric(client.adminUrl, 'remora_tcp_flows_opened_total', { direction: 'outbound', authority: 'db.test:3306' })

    t.equal(opened, 1, 'the client sidecar counts one opaque flow to db')
    const dbIn = await metric(mesh.sidecar('db').adminUrl, 'remora_tcp_flows_opened_total', { direction: 'inbound', authority: `:${serverFirst}` })
    t.equal(dbIn, 1, 'the db sidecar counts one inbound flow to its app port')
    if (mode === 'mTLS') {
      const peer = await metric(mesh.sidecar('db').adminUrl, 'remora_tcp_flows_opened_total', { direction: 'inbound', authority: `:${serverFirst}`, peer: 'spiffe://cluster.local/ns/test/sa/client' })
      t.equal(peer, 1, 'the inbound flow carries the caller\'s verified identity')
    }
    const sent = await metric(client.adminUrl, 'remora_tcp_flow_bytes_total', { direction: 'outbound', authority: 'db.test:3306', flow: 'sent' })
    t.ok(sent >= 'hello\n'.length, `bytes sent counted (${sent})`)
    // The line comes through the sidecar's stdout, maybe after the metrics were scraped: wait for it.
    const line = (l: Record<string, unknown>): boolean => l.access === 'outbound' && l.proto === 'TCP' && l.authority === 'db.test:3306' && l.route === 'mesh' && l.cause === 'tunnel'
    await waitForLog(client, line)
    t.ok(client.logs().some(line), 'an access-log line per opaque connection, naming its service')
  })
}

t.test('egress: allow-any passes a destination outside the mesh through; registry-only refuses it with a reason', async (t) => {
  const outside = await startServerFirst(t)
  const web = http.createServer((req, res) => res.end(`outside saw ${req.method} ${req.url} host=${req.headers.host}`))
  const webPort = await freePort()
  await new Promise<void>((resolve) => web.listen(webPort, '127.0.0.1', resolve))
  t.teardown(() => { web.close() })
  const serverFirst = await startServerFirst(t)
  const allow = await startMesh(t, spec(serverFirst, serverFirst))
  const client = allow.sidecar('client')
  const opened = await connect(client, `127.0.0.1:${outside}`)
  t.ok('socket' in opened, 'CONNECT to an address outside the mesh is opened (allow-any)')
  if ('socket' in opened) {
    t.equal(await readUntil(opened.socket, '\n'), '220 ready\n', 'and reaches it unchanged')
    opened.socket.destroy()
  }
  // TLS the app originates to a server outside the mesh: carried as it is, its server name logged.
  const tunnel = await connect(client, `127.0.0.1:${outside}`)
  if ('socket' in tunnel) {
    const hello = tls.connect({ socket: tunnel.socket, servername: 'api.example.com', rejectUnauthorized: false })
    hello.on('error', () => {}) // the outside server speaks no TLS: only the ClientHello matters
    await waitForLog(client, (l) => l.proto === 'TCP' && l.route === 'passthrough' && l.sni === 'api.example.com')
    t.pass('the SNI of TLS carried to a destination outside the mesh is in the access log')
    hello.destroy()
  }
  const answer = await new Promise<string>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: client.ports.outbound, path: `http://127.0.0.1:${webPort}/x?y=1` }, (res) => {
      let body = ''
      res.on('data', (d: Buffer) => { body += d.toString() })
      res.on('end', () => resolve(body))
    }).once('error', reject)
  })
  t.equal(answer, `outside saw GET /x?y=1 host=127.0.0.1:${webPort}`, 'an HTTP_PROXY request to an authority outside the mesh is forwarded to it')
  const nowhere = await new Promise<{ status: number, reason: unknown, body: string }>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: client.ports.outbound, path: 'http://nowhere.invalid/' }, (res) => {
      let body = ''
      res.on('data', (d: Buffer) => { body += d.toString() })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, reason: res.headers['remora-proxy-error'], body }))
    }).once('error', reject)
  })
  t.match(nowhere, { status: 502, reason: 'connect refused', body: /ENOTFOUND nowhere\.invalid/ }, 'a name DNS does not know: 502 connect refused, saying the name was not found')

  const strict = await startMesh(t, spec(serverFirst, serverFirst), { env: { REMORA_OUTBOUND_POLICY: 'registry-only' } })
  const refused = await connect(strict.sidecar('client'), `127.0.0.1:${outside}`)
  t.equal('status' in refused ? refused.status : 200, 503, 'registry-only: CONNECT outside the mesh is refused')
  t.equal('headers' in refused ? refused.headers['remora-proxy-error'] : undefined, 'unknown authority', 'with the reason')
})


t.test('opaque TCP is authorized by the caller\'s identity, as HTTP is: a caller not on the port\'s allow list gets no byte', async (t) => {
  const app = await startServerFirst(t)
  const base = spec(app, app)
  const secured: MeshSpec = {
    ...base,
    workloads: { ...base.workloads, db: { ...base.workloads.db, authorization: { allow: { [String(app)]: ['spiffe://cluster.local/ns/test/sa/someone-else'] } } } },
  }
  const { mesh } = await startSecureMesh(t, secured)
  const opened = await connect(mesh.sidecar('client'), 'db:3306')
  if (!('socket' in opened)) { t.fail('the tunnel itself opens (the refusal comes from the called sidecar)'); return }
  const got = await readUntil(opened.socket, '\n')
  t.equal(got, '', 'the connection ends without the server\'s greeting: the app was never reached')
  const db = mesh.sidecar('db')
  await waitForLog(db, (l) => l.proto === 'TCP' && String(l.error).startsWith('forbidden'))
  t.match(db.logs().find((l) => l.proto === 'TCP' && String(l.error).startsWith('forbidden')), { peer: 'spiffe://cluster.local/ns/test/sa/client', error: /may not call port/ }, 'the called sidecar logs who was refused and why')
  t.equal(await metric(db.adminUrl, 'remora_authorization_denied_total', { port: String(app) }), 1, 'and counts the denial')
})

t.test('CONNECT to a port beyond 65535 is refused as malformed, and the sidecar lives on (found by test/fuzz.test.ts)', async (t) => {
  const app = await startServerFirst(t)
  const mesh = await startMesh(t, spec(app, app))
  const client = mesh.sidecar('client')
  for (const target of ['web:65536', 'web:0', 'web:99999999']) {
    const refused = await connect(client, target)
    t.equal('status' in refused ? refused.status : 200, 400, `CONNECT ${target}: 400`)
    t.equal('headers' in refused ? refused.headers['remora-proxy-error'] : undefined, 'malformed request', 'with the reason')
  }
  const opened = await connect(client, 'db:3306')
  t.ok('socket' in opened, 'the sidecar still opens tunnels')
  if ('socket' in opened) {
    t.equal(await readUntil(opened.socket, '\n'), '220 ready\n')
    opened.socket.destroy()
  }
  t.notOk(client.logs().some((l) => l.level === 'fatal' || l.why === 'unexpected error'), 'no fatal error, no unexpected-error drain')
})
