// Black-box: inbound authorization by caller identity and namespace (mesh file and REMORA_AUTHZ_* policies, HTTP and gRPC), what a denial looks like (403 forbidden / PERMISSION_DENIED, metric, log, app untouched), plaintext callers in permissive mode, and a bad REMORA_AUTHZ_ALLOW refused at start.
import t, { type Test } from 'tap'
import type http from 'node:http'
import { Pool } from 'undici'
import { startApp } from '../harness/apps.ts'
import { startSecureMesh } from '../harness/control.ts'
import { echoClient, startEchoServer, unary, type EchoClient } from '../harness/grpc-echo.ts'
import { curl, header } from '../harness/http.ts'
import { SidecarProcess, startSidecars, writeMesh, type MeshSpec } from '../harness/mesh.ts'
import { metric } from '../harness/metrics.ts'

const id = (ns: string, sa: string): string => `spiffe://cluster.local/ns/${ns}/sa/${sa}`
const CART = id('shop', 'cart')
const ADMIN = id('ops', 'admin')
const INTRUDER = id('shop', 'intruder')
const DENIED_LOG = 'inbound request denied by authorization'

/** An HTTP app that records every path it is asked for and answers with the caller the sidecar vouched for. */
async function recordingApp (t: Test): Promise<{ port: number, paths: string[] }> {
  const paths: string[] = []
  const app = await startApp(t, (req: http.IncomingMessage, res: http.ServerResponse) => {
    paths.push(req.url ?? '')
    req.resume()
    res.end(`app ${req.url ?? ''} caller=${String(req.headers['remora-client-id'])}`)
  })
  return { port: app.port, paths }
}

t.test('allow and deny by SPIFFE ID and namespace, from the mesh file and REMORA_AUTHZ_*, for HTTP and gRPC', async (t) => {
  const app = await recordingApp(t)
  const grpcSeen: string[] = []
  const echo = await startEchoServer(t, (call, cb) => { grpcSeen.push(call.request.message); cb(null, { message: `${call.request.message} caller=${String(call.metadata.get('remora-client-id')[0])}` }) })
  const HTTP = app.port
  const GRPC = echo.port
  const appPorts: MeshSpec['workloads'][string]['appPorts'] = [{ port: HTTP, protocol: 'http1' }, { port: GRPC, protocol: 'grpc' }]
  const servers = ['web', 'vault', 'orders', 'api'] as const
  const spec: MeshSpec = {
    workloads: {
      cart: { namespace: 'shop', appPorts: [1] },
      admin: { namespace: 'ops', appPorts: [1] },
      intruder: { namespace: 'shop', appPorts: [1] },
      // No policy: the strict-mTLS default, all-authenticated.
      web: { namespace: 'shop', appPorts },
      vault: { namespace: 'shop', appPorts, authorization: { default: 'deny' } },
      orders: { namespace: 'shop', appPorts, authorization: { allow: { [HTTP]: ['ns:shop'], [GRPC]: [ADMIN] } } },
      // Its policy comes from the environment of its sidecar (below); the mesh file's default is overridden.
      api: { namespace: 'shop', appPorts, authorization: { default: 'all-authenticated' } },
    },
    services: servers.flatMap((s) => [
      { name: s, namespace: 'shop', port: 80, endpoints: [{ workload: s, targetPort: HTTP }] },
      { name: `${s}-grpc`, namespace: 'shop', port: 50051, protocol: 'grpc' as const, endpoints: [{ workload: s, targetPort: GRPC }] },
    ]),
  }
  const { mesh, control, trustAnchors } = await startSecureMesh(t, spec, { only: ['cart', 'admin', 'intruder', 'web', 'vault', 'orders'] })
  await startSidecars(t, mesh, {
    only: ['api'],
    env: { REMORA_CONTROL_ADDR: control.address, REMORA_TRUST_ANCHORS: trustAnchors, REMORA_AUTHZ_DEFAULT: 'deny', REMORA_AUTHZ_ALLOW: `${HTTP}=${CART},ns:ops` },
  })

  const pools = new Map<string, Pool>()
  const get = async (caller: string, host: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number, proxyError: string | undefined, body: string }> => {
    let pool = pools.get(caller)
    if (pool === undefined) {
      const p = new Pool(mesh.sidecar(caller).proxyUrl, { connections: 2 })
      t.teardown(() => p.destroy())
      pools.set(caller, pool = p)
    }
    const res = await pool.request({ path, method: 'GET', headers: { host, ...headers } })
    const pe = res.headers['remora-proxy-error']
    return { status: res.statusCode, proxyError: Array.isArray(pe) ? pe[0] : pe, body: await res.body.text() }
  }
  const channels = new Map<string, EchoClient>()
  const call = async (caller: string, authority: string, message: string): Promise<{ code: number, details: string, message: string | undefined }> => {
    const key = `${caller} ${authority}`
    let channel = channels.get(key)
    if (channel === undefined) channels.set(key, channel = echoClient(t, mesh.sidecar(caller), authority))
    const { err, reply } = await unary(channel, { message }, { deadline: Date.now() + 10_000 })
    return { code: err?.code ?? 0, details: err?.details ?? '', message: reply?.message }
  }

  // Who may call what: [server, caller, http allowed, grpc allowed].
  const callers = { cart: CART, admin: ADMIN, intruder: INTRUDER }
  const matrix: Array<[typeof servers[number], keyof typeof callers, boolean, boolean]> = [
    ['web', 'cart', true, true], ['web', 'admin', true, true], ['web', 'intruder', true, true],
    ['vault', 'cart', false, false], ['vault', 'admin', false, false], ['vault', 'intruder', false, false],
    ['orders', 'cart', true, false], ['orders', 'admin', false, true], ['orders', 'intruder', true, false],
    ['api', 'cart', true, false], ['api', 'admin', true, false], ['api', 'intruder', false, false],
  ]
  for (const [server, caller, httpOk, grpcOk] of matrix) {
    const identity = callers[caller]
    const path = `/${server}/${caller}`
    const before = app.paths.length
    const res = await get(caller, server, path)
    if (httpOk) {
      t.same([res.status, res.body], [200, `app ${path} caller=${identity}`], `HTTP ${caller} → ${server}: allowed, the app learns the caller`)
    } else {
      t.same([res.status, res.proxyError], [403, 'forbidden'], `HTTP ${caller} → ${server}: 403 forbidden`)
      t.match(res.body, `forbidden: ${identity} may not call port ${HTTP}`, 'the body names the caller and the port')
      t.equal(app.paths.length, before, 'the denied request never reached the app')
    }
    const message = `${server}/${caller}`
    const grpcBefore = grpcSeen.length
    const r = await call(caller, `${server}-grpc:50051`, message)
    if (grpcOk) {
      t.same([r.code, r.message], [0, `${message} caller=${identity}`], `gRPC ${caller} → ${server}: allowed`)
    } else {
      t.equal(r.code, 7, `gRPC ${caller} → ${server}: PERMISSION_DENIED`)
      t.match(r.details, `forbidden: ${identity} may not call port ${GRPC}`, 'grpc-message names the caller and the port')
      t.equal(grpcSeen.length, grpcBefore, 'the denied call never reached the app')
    }
  }
  t.notOk(app.paths.some((p) => matrix.some(([s, c, ok]) => !ok && p === `/${s}/${c}`)), 'no denied path in the app\'s log')

  // A caller cannot claim another identity with the header the app reads: it is the certificate that counts.
  const spoofed = await get('intruder', 'api', '/api/spoofed', { 'remora-client-id': CART })
  t.same([spoofed.status, spoofed.proxyError], [403, 'forbidden'], 'a forged remora-client-id header does not get the intruder in')
  const vouched = await get('intruder', 'web', '/web/spoofed', { 'remora-client-id': CART })
  t.equal(vouched.body, `app /web/spoofed caller=${INTRUDER}`, 'the app sees the verified identity, not the forged one')

  // Denials by port and rule, as counted by each server's sidecar; allowed calls by caller.
  const denied = async (server: string, port: number, rule: string): Promise<number> =>
    metric(mesh.sidecar(server).adminUrl, 'remora_authorization_denied_total', { port: String(port), rule })
  const expectedDenials: Array<[string, number, string, number]> = [
    ['vault', HTTP, 'default deny', 3], ['vault', GRPC, 'default deny', 3],
    ['orders', HTTP, `port ${HTTP} allow list`, 1], ['orders', GRPC, `port ${GRPC} allow list`, 2],
    ['api', HTTP, `port ${HTTP} allow list`, 2], ['api', GRPC, 'default deny', 3],
  ]
  for (const [server, port, rule, n] of expectedDenials) {
    t.equal(await denied(server, port, rule), n, `${server}: remora_authorization_denied_total{port="${port}",rule="${rule}"} = ${n}`)
  }
  t.equal(await metric(mesh.sidecar('web').adminUrl, 'remora_authorization_denied_total'), 0, 'web denied nobody')
  const byPeer = async (server: string, caller: string, port: number): Promise<number> =>
    metric(mesh.sidecar(server).adminUrl, 'remora_inbound_requests_by_peer_total', { client_id: caller, port: String(port) })
  t.equal(await byPeer('web', INTRUDER, HTTP), 2, 'web counted the intruder\'s two allowed requests')
  t.equal(await byPeer('orders', CART, HTTP), 1, 'orders counted cart on the HTTP port (ns:shop)')
  t.equal(await byPeer('orders', ADMIN, GRPC), 1, 'orders counted admin on the gRPC port (its SPIFFE ID)')
  t.equal(await byPeer('api', ADMIN, HTTP), 1, 'api counted admin (ns:ops from REMORA_AUTHZ_ALLOW)')
  t.equal(await byPeer('api', INTRUDER, HTTP), 0, 'a denied caller is not counted as served')

  // The server's log names the caller and the rule of each denial (throttled: once per caller, port and rule).
  const denials = (server: string): Array<Record<string, unknown>> => mesh.sidecar(server).logs().filter((l) => l.msg === DENIED_LOG)
  t.match(denials('orders').find((l) => l.caller === ADMIN), { port: HTTP, rule: `port ${HTTP} allow list`, from: '127.0.0.1' }, 'orders logged admin on the HTTP port, with the rule')
  t.same(denials('orders').map((l) => `${String(l.caller)} ${String(l.port)}`).sort(), [`${ADMIN} ${HTTP}`, `${CART} ${GRPC}`, `${INTRUDER} ${GRPC}`], 'one line per denied caller and port')
  t.match(denials('api').find((l) => l.caller === INTRUDER && l.port === HTTP), { rule: `port ${HTTP} allow list`, level: 'warn' }, 'api logged the intruder as a warning')
  t.equal(denials('api').filter((l) => l.caller === INTRUDER && l.port === HTTP).length, 1, 'the repeated denial (forged header) was counted, not logged again')
  t.equal(denials('vault').length, 6, 'vault logged each caller on each port')
  t.ok(denials('vault').every((l) => l.rule === 'default deny'), 'with the rule "default deny"')
  t.same(denials('web'), [], 'web logged no denial')
  t.equal(await metric(mesh.sidecar('web').adminUrl, 'remora_tls_handshake_failures_total'), 0, 'every caller came in over mTLS')

  // Plaintext straight to a strict port is refused before authorization.
  const plain = await curl([`http://127.0.0.1:${mesh.sidecar('web').ports.inbound}/plain`, '-H', 'Host: web'])
  t.same([plain.status, header(plain, 'remora-proxy-error')], [403, 'mtls required'], 'strict mTLS: plaintext gets 403 mtls required')
})

t.test('permissive mTLS: plaintext callers pass all-unauthenticated and are refused by all-authenticated', async (t) => {
  const app = await recordingApp(t)
  const spec: MeshSpec = {
    workloads: {
      cart: { namespace: 'shop', appPorts: [1] },
      pub: { namespace: 'shop', appPorts: [{ port: app.port, protocol: 'http1' }] },
      // Permissive mode alone defaults to all-unauthenticated; this workload asks for more in the mesh file.
      priv: { namespace: 'shop', appPorts: [{ port: app.port, protocol: 'http1' }], authorization: { default: 'all-authenticated' } },
    },
    services: ['pub', 'priv'].map((name) => ({ name, namespace: 'shop', port: 80, endpoints: [{ workload: name, targetPort: app.port }] })),
  }
  const { mesh, control, trustAnchors } = await startSecureMesh(t, spec, { only: ['cart'] })
  const env = { REMORA_CONTROL_ADDR: control.address, REMORA_TRUST_ANCHORS: trustAnchors, REMORA_INBOUND_MTLS: 'permissive' }
  await Promise.all([
    startSidecars(t, mesh, { only: ['pub'], env: { ...env, REMORA_AUTHZ_DEFAULT: 'all-unauthenticated' } }),
    startSidecars(t, mesh, { only: ['priv'], env }),
  ])
  const pub = mesh.sidecar('pub')
  const priv = mesh.sidecar('priv')

  const open = await curl([`http://127.0.0.1:${pub.ports.inbound}/open`, '-H', 'Host: pub', '-H', `remora-client-id: ${ADMIN}`])
  t.same([open.status, open.body.toString()], [200, 'app /open caller=undefined'], 'all-unauthenticated: a plaintext request reaches the app, with no caller identity (a forged one is dropped)')
  t.equal(await metric(pub.adminUrl, 'remora_inbound_requests_by_peer_total', { client_id: 'unauthenticated' }), 1, 'counted as unauthenticated')

  const before = app.paths.length
  const refused = await curl([`http://127.0.0.1:${priv.ports.inbound}/closed`, '-H', 'Host: priv'])
  t.same([refused.status, header(refused, 'remora-proxy-error')], [403, 'forbidden'], 'all-authenticated: a plaintext request gets 403 forbidden, not "mtls required"')
  t.match(refused.body.toString(), 'an unauthenticated caller may not call port')
  const h2c = await curl(['--http2-prior-knowledge', `http://127.0.0.1:${priv.ports.inbound}/closed-h2c`, '-H', 'Host: priv'])
  t.same([h2c.status, header(h2c, 'remora-proxy-error')], [403, 'forbidden'], 'plaintext h2c too')
  t.equal(app.paths.length, before, 'neither reached the app')
  t.equal(await metric(priv.adminUrl, 'remora_authorization_denied_total', { port: String(app.port), rule: 'default all-authenticated' }), 2, 'both counted with the rule')
  const logged = priv.logs().filter((l) => l.msg === DENIED_LOG)
  t.equal(logged.length, 1, 'logged once (the second denial of the same caller, port and rule is only counted)')
  t.match(logged[0], { caller: 'unauthenticated', rule: 'default all-authenticated', port: app.port }, 'as an unauthenticated caller, with the rule')

  // Mesh callers still come in over mTLS on the same ports.
  const pool = new Pool(mesh.sidecar('cart').proxyUrl, { connections: 1 })
  t.teardown(() => pool.destroy())
  for (const host of ['pub', 'priv']) {
    const res = await pool.request({ path: `/${host}/mesh`, method: 'GET', headers: { host } })
    t.equal(await res.body.text(), `app /${host}/mesh caller=${CART}`, `a mesh caller reaches ${host} with its identity`)
  }
})

t.test('a bad REMORA_AUTHZ_ALLOW stops the sidecar at start with exit code 2, naming the variable and the entry', async (t) => {
  const mesh = await writeMesh({ workloads: { web: { namespace: 'shop', appPorts: [8080] } }, services: [] })
  const ports = mesh.ports.get('web')
  if (ports === undefined) throw new Error('no ports')
  const cases: Array<[string, string]> = [
    ['8080=ns:Shop', '"ns:Shop": ns: needs a Kubernetes namespace name'],
    ['8080=spiffe://cluster.local/ns/shop', 'invalid SPIFFE ID'],
    ['8080=cart', '"cart" is neither a SPIFFE ID'],
    ['web=ns:shop', '"web=ns:shop" should look like <port>=<rule>'],
    ['8080=ns:shop;9090=', '"9090=" lists no callers'],
  ]
  await Promise.all(cases.map(async ([value, problem]) => {
    const s = new SidecarProcess('web', ports, ['--mesh-file', mesh.file, '--workload', 'web'], { ...process.env, REMORA_AUTHZ_ALLOW: value })
    t.teardown(() => s.stop('SIGKILL'))
    await t.rejects(s.start(), /exited with 2/, `REMORA_AUTHZ_ALLOW=${value}: exit code 2`)
    t.match(s.output, 'environment variable REMORA_AUTHZ_ALLOW', `${value}: the message names the variable`)
    t.match(s.output, problem, `${value}: and what is wrong with the entry`)
    if (value.includes('spiffe://cluster.local/ns/shop')) t.match(s.output, 'spiffe://cluster.local/ns/shop', 'the bad SPIFFE ID is quoted')
  }))
})
