// /app-health/<container>/<kind> on the admin server, in process, against real apps on real sockets:
// each answer is kubelet's judgement of the app's own probe (200-399 healthy, TCP connect, timeout).
import t from 'tap'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import { once, EventEmitter } from 'node:events'
import { KeyObject } from 'node:crypto'
import { networkInterfaces } from 'node:os'
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import { Registry } from 'prom-client'
import { request } from 'undici'
import { createAdminServer } from '../../src/admin/server.ts'
import { AppProber, APP_PROBE_TIMEOUT_MS } from '../../src/inbound/app-probe.ts'
import { parseAppProbes } from '../../src/parse/app-probes.ts'
import { startApp } from '../harness/apps.ts'
import { freePort, type Teardown } from '../harness/mesh.ts'

x509.cryptoProvider.set(globalThis.crypto)

interface Admin { url: string, port: number, calls: EventEmitter }

/** The admin server as the sidecar wires it, on 0.0.0.0 (kubelet is not loopback), with these probes. */
async function startAdmin (t: Teardown, probes: unknown, timeoutMs?: number): Promise<Admin> {
  const prober = new AppProber(parseAppProbes(JSON.stringify(probes)), { timeoutMs })
  const calls = new EventEmitter()
  const server = createAdminServer({ registry: new Registry(), config: {}, endpoints: () => ({}) }, {
    ready: () => ({ ready: true, why: 'ready' }),
    shutdown: () => {},
    appHealth: (name, userAgent) => {
      const running = prober.run(name, userAgent)
      calls.emit('call', name)
      return running
    },
  })
  server.listen(0, '0.0.0.0')
  await once(server, 'listening')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const port = (server.address() as net.AddressInfo).port
  return { url: `http://127.0.0.1:${port}`, port, calls }
}

const get = async (url: string, init: { method?: 'GET' | 'POST' | 'HEAD' | 'PUT', headers?: Record<string, string>, body?: string } = {}): Promise<{ status: number, text: string, headers: Record<string, unknown> }> => {
  const res = await request(url, init)
  return { status: res.statusCode, text: await res.body.text(), headers: res.headers }
}

/** A self-signed certificate and its key, as an app serving HTTPS on its own might have. */
async function selfSigned (): Promise<{ cert: string, key: string }> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' }
  const keys = await globalThis.crypto.subtle.generateKey(alg, true, ['sign', 'verify'])
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01', name: 'CN=app.local', keys, signingAlgorithm: alg,
    notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 3_600_000),
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: 'app.local' }])],
  })
  return { cert: cert.toString('pem'), key: KeyObject.from(keys.privateKey).export({ type: 'pkcs8', format: 'pem' }).toString() }
}

t.test('httpGet: 200-399 is healthy (a redirect is not followed), anything else 503 with the status, never the body', async (t) => {
  const seen: http.IncomingHttpHeaders[] = []
  const paths: string[] = []
  const app = await startApp(t, (req, res) => {
    seen.push(req.headers)
    paths.push(req.url ?? '')
    if (req.url?.startsWith('/ok') === true) return res.end('fine')
    if (req.url === '/moved') return res.writeHead(302, { location: '/elsewhere' }).end()
    res.writeHead(500).end('stack trace with internals')
  })
  const admin = await startAdmin(t, {
    'web/liveness': { port: app.port, path: '/ok?x=1', headers: [{ name: 'Host', value: 'web.local' }, { name: 'X-Custom', value: 'a' }, { name: 'x-custom', value: 'b' }, { name: 'Content-Length', value: '5' }] },
    'web/readiness': { port: app.port, path: '/fail' },
    'web/startup': { port: app.port, path: '/moved', scheme: 'HTTP' },
  })
  const live = await get(`${admin.url}/app-health/web/liveness`, { headers: { 'user-agent': 'kube-probe/1.31' } })
  t.equal(live.status, 200)
  t.equal(live.text, `GET http://127.0.0.1:${app.port}/ok?x=1: HTTP 200\n`)
  t.equal(paths[0], '/ok?x=1', 'the path goes with its query')
  t.match(seen[0], { host: 'web.local', 'x-custom': 'a, b', 'user-agent': 'kube-probe/1.31', accept: '*/*', connection: 'close' }, "the declared headers (Host too), kubelet's User-Agent")
  t.equal(seen[0]['content-length'], undefined, 'framing headers are the prober\'s own: a declared Content-Length is not sent')

  const failed = await get(`${admin.url}/app-health/web/readiness`, { headers: { 'user-agent': 'kube-probe/1.31' } })
  t.equal(failed.status, 503)
  t.equal(failed.text, `GET http://127.0.0.1:${app.port}/fail: HTTP 500\n`, "the app's status, not its body")
  t.match(seen[1], { host: `127.0.0.1:${app.port}` }, 'Host is the app address when none is declared')

  const moved = await get(`${admin.url}/app-health/web/startup`)
  t.equal(moved.status, 200, '3xx is success, as in kubelet\'s range')
  t.match(moved.text, /HTTP 302/)
  t.same(paths, ['/ok?x=1', '/fail', '/moved'], 'the redirect was not followed')
  t.equal(seen[2]['user-agent'], 'remora-app-probe', 'a User-Agent of our own when the caller sent none')
})

t.test('httpGet over HTTPS: TLS without verifying the app\'s self-signed certificate, as kubelet', async (t) => {
  const port = await freePort()
  const server = https.createServer(await selfSigned(), (req, res) => res.writeHead(req.url === '/healthz' ? 204 : 503).end())
  server.listen(port, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const admin = await startAdmin(t, {
    'web/liveness': { port, path: '/healthz', scheme: 'HTTPS' },
    'web/readiness': { port, path: '/down', scheme: 'HTTPS' },
    'web/startup': { port, path: '/healthz', scheme: 'HTTP' },
  })
  const ok = await get(`${admin.url}/app-health/web/liveness`)
  t.equal(ok.status, 200)
  t.equal(ok.text, `GET https://127.0.0.1:${port}/healthz: HTTP 204\n`)
  t.equal((await get(`${admin.url}/app-health/web/readiness`)).status, 503, 'an HTTPS app saying 503 is unhealthy')
  const plain = await get(`${admin.url}/app-health/web/startup`)
  t.equal(plain.status, 503, 'plaintext HTTP to a TLS port fails')
  t.match(plain.text, new RegExp(`^GET http://127\\.0\\.0\\.1:${port}/healthz: `))
})

t.test('tcpSocket: a connection that opens is healthy; a refused one is not', async (t) => {
  const up = net.createServer((s) => s.end())
  const upPort = await freePort()
  up.listen(upPort, '127.0.0.1')
  await once(up, 'listening')
  t.teardown(() => up.close())
  const downPort = await freePort()
  const admin = await startAdmin(t, { 'db/liveness': { port: upPort, tcp: true }, 'db/readiness': { port: downPort, tcp: true }, 'db/startup': { port: downPort } })
  const accepted = once(up, 'connection')
  const ok = await get(`${admin.url}/app-health/db/liveness`)
  t.equal(ok.status, 200)
  t.equal(ok.text, `tcp 127.0.0.1:${upPort}: connected\n`)
  await accepted
  const down = await get(`${admin.url}/app-health/db/readiness`)
  t.equal(down.status, 503)
  t.equal(down.text, `tcp 127.0.0.1:${downPort}: ECONNREFUSED\n`)
  const httpDown = await get(`${admin.url}/app-health/db/startup`)
  t.equal(httpDown.status, 503)
  t.equal(httpDown.text, `GET http://127.0.0.1:${downPort}/: ECONNREFUSED\n`, 'an http probe to nothing is refused too')
})

t.test('an app that does not answer in time is unhealthy, and its connection is closed', async (t) => {
  t.equal(APP_PROBE_TIMEOUT_MS, 10_000, 'the fixed bound in production (kubelet sends no timeoutSeconds)')
  const held: http.ServerResponse[] = []
  const arrived = new EventEmitter()
  const app = await startApp(t, (req, res) => { held.push(res); arrived.emit('request', req) })
  const admin = await startAdmin(t, { 'web/liveness': { port: app.port, path: '/slow' } }, 150)
  const got = once(arrived, 'request') as Promise<[http.IncomingMessage]>
  const answer = get(`${admin.url}/app-health/web/liveness`)
  const [req] = await got
  const closed = once(req.socket, 'close')
  const res = await answer
  t.equal(res.status, 503)
  t.equal(res.text, `GET http://127.0.0.1:${app.port}/slow: no answer within 150 ms\n`)
  await closed
  t.pass('the prober closed its connection to the app')
})

t.test('one probe in flight per name, however many ask', async (t) => {
  const held: http.ServerResponse[] = []
  const app = await startApp(t, (_req, res) => { held.push(res) })
  const admin = await startAdmin(t, { 'web/readiness': { port: app.port, path: '/ready' } })
  let calls = 0
  const bothAsked = new Promise<void>((resolve) => admin.calls.on('call', () => { if (++calls === 2) resolve() }))
  const first = get(`${admin.url}/app-health/web/readiness`)
  const second = get(`${admin.url}/app-health/web/readiness`)
  await bothAsked
  await new Promise<void>((resolve) => { if (held.length > 0) resolve(); else app.server.once('request', () => resolve()) })
  held[0].end('ok')
  t.same([(await first).status, (await second).status], [200, 200])
  t.equal(app.requests, 1, 'the app saw one probe')
  const third = get(`${admin.url}/app-health/web/readiness`)
  await new Promise<void>((resolve) => app.server.once('request', () => resolve()))
  held[1].end('ok')
  t.equal((await third).status, 200)
  t.equal(app.requests, 2, 'a later ask probes again')
})

t.test('only the declared probes, only GET', async (t) => {
  const app = await startApp(t, (_req, res) => res.end())
  const admin = await startAdmin(t, { 'web/liveness': { port: app.port, path: '/' } })
  for (const path of ['/app-health/web/readiness', '/app-health/other/liveness', '/app-health/web', '/app-health/', '/app-health/web/liveness/', '/app-health/constructor', '/app-health/web/liveness/../../x']) {
    const res = await get(`${admin.url}${path}`)
    t.equal(res.status, 404, `${path}: 404`)
  }
  t.match((await get(`${admin.url}/app-health/web/readiness`)).text, /^no app probe "web\/readiness": the pod declared none by that name/)
  for (const method of ['POST', 'PUT', 'HEAD'] as const) {
    const res = await get(`${admin.url}/app-health/web/liveness`, { method, ...(method === 'HEAD' ? {} : { body: 'x' }) })
    t.equal(res.status, 405, `${method}: 405`)
    t.equal(res.headers.allow, 'GET')
  }
  t.equal(app.requests, 0, 'the app saw none of these')
  t.equal((await get(`${admin.url}/app-health/web/liveness?verbose=1`)).status, 200, 'a query on the admin path is ignored')
  t.equal(app.requests, 1)
})

const outside = Object.values(networkInterfaces()).flat().find((a) => a !== undefined && a.family === 'IPv4' && !a.internal)?.address

t.test('served to a caller that is not loopback (kubelet comes from the node)', { skip: outside === undefined ? 'no non-loopback IPv4 address on this host' : false }, async (t) => {
  const address = outside as string
  const app = await startApp(t, (_req, res) => res.end())
  const admin = await startAdmin(t, { 'web/liveness': { port: app.port } })
  // To an address of this host, the kernel picks that address as the source: the admin server sees a non-loopback caller.
  const res = await request(`http://${address}:${admin.port}/app-health/web/liveness`)
  t.equal(res.statusCode, 200)
  await res.body.text()
  const config = await request(`http://${address}:${admin.port}/config.json`)
  t.equal(config.statusCode, 403, 'while /config.json stays loopback-only')
  await config.body.text()
})
