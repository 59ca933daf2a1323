// Black-box: mTLS at a sidecar's inbound port and at the control plane's CA, with real TLS and certificates made by
// the project's own CA code. Every bad handshake is refused and its reason counted while the proxy keeps serving.
// Plaintext gets 403 on a strict port and is let in on a permissive one. The app learns who called only from the
// certificate. The CA signs only the identity the caller proved, and its key never leaves the control plane.
import t from 'tap'
import { X509Certificate, createPrivateKey } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type http from 'node:http'
import http2, { type IncomingHttpHeaders, type OutgoingHttpHeaders, type SecureClientSessionOptions } from 'node:http2'
import { join } from 'node:path'
import type { PeerCertificate } from 'node:tls'
import { request } from 'undici'
import { CertificateAuthority, type SignOptions } from '../../src/identity/ca.ts'
import { certificateInfo, createCsr, generateWorkloadKey } from '../../src/identity/keys.ts'
import { eventually, startSidecars, type MeshSpec, type SidecarProcess } from '../harness/mesh.ts'
import { startApp } from '../harness/apps.ts'
import { startSecureMesh } from '../harness/control.ts'
import { promNumber, samples, scrapeMetrics } from '../harness/metrics.ts'

const TD = 'cluster.local'
const id = (sa: string): string => `spiffe://${TD}/ns/test/sa/${sa}`
const CLIENT = id('client')
const WEB = id('web')
const FAILURES = 'remora_tls_handshake_failures_total'

/** The app tells who called it: its name and the `remora-client-id` it received ("none" without one). */
const whoCalled = (name: string): http.RequestListener => (req, res) => {
  req.resume()
  req.on('end', () => res.end(`${name} ${String(req.headers['remora-client-id'] ?? 'none')}`))
}

const webApp = await startApp(t, whoCalled('web'))
const openApp = await startApp(t, whoCalled('open'))

/**
 * `web` (strict) admits only `client` on its app port. `open` runs permissive (set below) and admits anyone (the
 * default in permissive mode; said here too so the test does not depend on it).
 */
function spec (webIdentity?: string): MeshSpec {
  // A variable, not a literal in the array: `identity` is a mesh-file key the harness type does not list.
  const webEndpoint = { workload: 'web', targetPort: webApp.port, ...(webIdentity === undefined ? {} : { identity: webIdentity }) }
  return {
    workloads: {
      client: { appPorts: [1] },
      web: { appPorts: [{ port: webApp.port, protocol: 'http1' }], authorization: { allow: { [String(webApp.port)]: [CLIENT] } } },
      open: { appPorts: [{ port: openApp.port, protocol: 'http1' }], authorization: { default: 'all-unauthenticated' } },
    },
    services: [
      { name: 'web', port: 80, endpoints: [webEndpoint] },
      { name: 'open', port: 80, endpoints: [{ workload: 'open', targetPort: openApp.port }] },
    ],
  }
}

const { mesh, control, caDir, trustAnchors } = await startSecureMesh(t, spec(), { only: ['client', 'web'] })
await startSidecars(t, mesh, { only: ['open'], env: { REMORA_CONTROL_ADDR: control.address, REMORA_TRUST_ANCHORS: trustAnchors, REMORA_INBOUND_MTLS: 'permissive' } })
const client = mesh.sidecar('client')
const web = mesh.sidecar('web')
const open = mesh.sidecar('open')
const sidecars = [client, web, open]
const webInbound = mesh.ports.get('web')?.inbound as number
const openInbound = mesh.ports.get('open')?.inbound as number

const caFile = (name: string): string => readFileSync(join(caDir, name), 'utf8')
const rootPem = caFile('root.pem')
const issuerPem = caFile('issuer.pem')
const issuerKeyPem = caFile('issuer-key.pem')
// The test plays an attacker (or a misconfigured peer) with certificates from the mesh's own CA.
const meshCa = await CertificateAuthority.load({ rootPem, issuerPem, issuerKeyPem, trustDomain: TD })

interface Party { key: string, cert: string }

/** A key and a certificate chain (leaf, issuer) for `identity` from `ca`. */
async function party (ca: CertificateAuthority, identity: string, options: SignOptions = {}): Promise<Party> {
  const key = await generateWorkloadKey()
  const issued = await ca.sign(await createCsr(key, identity), identity, options)
  return { key: key.privateKeyPem, cert: issued.chainPem.join('') }
}

interface Reply {
  status: number | undefined
  headers: IncomingHttpHeaders
  body: string
  /** Why the connection failed (node error code), if it did. */
  sessionError: string | undefined
  streamError: string | undefined
}

/** One HTTP/2 request on a fresh connection; never throws. With `firstLine`, stops after the first body line (watches). */
function h2 (url: string, options: SecureClientSessionOptions, headers: OutgoingHttpHeaders = {}, body?: string, firstLine = false): Promise<Reply> {
  return new Promise((resolve) => {
    const out: Reply = { status: undefined, headers: {}, body: '', sessionError: undefined, streamError: undefined }
    const session = http2.connect(url, options)
    const done = (): void => { clearTimeout(timer); session.destroy(); resolve(out) }
    const timer = setTimeout(() => { out.sessionError ??= 'no answer within 5 s'; done() }, 5000)
    session.on('error', (err: NodeJS.ErrnoException) => { out.sessionError ??= err.code ?? err.message; done() })
    session.on('close', done)
    const req = session.request({ ':path': '/direct', ...headers })
    req.setEncoding('utf8')
    req.on('response', (h) => { out.status = Number(h[':status']); out.headers = h })
    req.on('data', (c: string) => { out.body += c; if (firstLine && out.body.includes('\n')) done() })
    req.on('end', done)
    // A TLS alert after the handshake (TLS 1.3 refuses client certificates then) errors the stream, not the session.
    req.on('error', (err: NodeJS.ErrnoException) => { out.streamError ??= err.code ?? err.message })
    req.on('close', () => {
      if (out.status === undefined) out.streamError ??= `stream closed unanswered (RST_STREAM code ${req.rstCode ?? '-'})`
      // The session's own error (the connection's fate) follows the stream's close within a tick.
      setImmediate(done)
    })
    req.end(body)
  })
}

/** Trust the mesh and expect web's identity: only the client side of the handshake is under test. */
const webServer = (peer?: Partial<Party> & SecureClientSessionOptions): SecureClientSessionOptions => ({
  ca: rootPem,
  checkServerIdentity: (_host: string, cert: PeerCertificate) => cert.subjectaltname === `URI:${WEB}` ? undefined : new Error(`web presented ${cert.subjectaltname}`),
  ...peer,
})
const toWeb = (peer?: Partial<Party> & SecureClientSessionOptions, headers?: OutgoingHttpHeaders): Promise<Reply> => h2(`https://127.0.0.1:${webInbound}`, webServer(peer), headers)

/** The handshake failures a sidecar counted so far in one direction, by reason. */
async function tlsFailures (s: SidecarProcess, direction = 'inbound'): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  for (const m of samples(await scrapeMetrics(s.adminUrl), FAILURES, { direction })) {
    const reason = m.labels?.reason ?? '?'
    out[reason] = (out[reason] ?? 0) + promNumber(m.value)
  }
  return out
}

/**
 * What `act` added to the sidecar's failure counts. A refused handshake is counted a moment after the client sees it
 * fail, so this waits (up to 2 s) for a change unless `expectChange` is false (plaintext is counted before the answer).
 */
async function countedBy (s: SidecarProcess, act: () => Promise<unknown>, expectChange = true, direction = 'inbound'): Promise<Record<string, number>> {
  const before = await tlsFailures(s, direction)
  await act()
  const diff = async (): Promise<Record<string, number>> => {
    const after = await tlsFailures(s, direction)
    const d: Record<string, number> = {}
    for (const [reason, n] of Object.entries(after)) if (n !== (before[reason] ?? 0)) d[reason] = n - (before[reason] ?? 0)
    return d
  }
  if (expectChange) await eventually(async () => Object.keys(await diff()).length > 0, 2000, 'the failure is counted').catch(() => {})
  return diff()
}

const total = (counts: Record<string, number>): number => Object.values(counts).reduce((a, b) => a + b, 0)

/**
 * node verifies a client certificate after the handshake and, with rejectUnauthorized, just destroys the socket: the
 * server's tlsClientError then carries ECONNRESET ("socket hang up"); the verify error (CERT_HAS_EXPIRED,
 * UNABLE_TO_GET_ISSUER_CERT_LOCALLY) is in socket.authorizationError, where src/inbound/http2.ts reads it.
 */

type Checks = Pick<typeof t, 'equal' | 'ok'>
const alive = (s: SidecarProcess): boolean => s.proc.exitCode === null && s.proc.signalCode === null

/** After every refusal: the client's sidecar still reaches web, a fresh valid handshake still works, nobody died. */
async function stillServing (t: Checks, what: string): Promise<void> {
  const res = await request(`${client.proxyUrl}/after`, { headers: { host: 'web' } })
  t.equal(res.statusCode, 200, `${what}: a request through the client sidecar still succeeds`)
  t.equal(await res.body.text(), `web ${CLIENT}`, `${what}: the app sees the client's identity`)
  const fresh = await toWeb(await valid)
  t.equal(fresh.status, 200, `${what}: a new valid mTLS connection is still accepted (${fresh.sessionError ?? 'ok'})`)
  t.ok(sidecars.every(alive), `${what}: every sidecar process is alive`)
}

const valid = party(meshCa, CLIENT)

t.test('a client certificate from another CA is refused (untrusted)', async (t) => {
  const otherCa = await CertificateAuthority.create({ trustDomain: TD })
  const impostor = await party(otherCa, CLIENT)
  let reply: Reply | undefined
  const counted = await countedBy(web, async () => { reply = await toWeb(impostor) })
  t.equal(reply?.status, undefined, `no response (client saw ${reply?.sessionError ?? reply?.streamError})`)
  t.ok(reply?.sessionError !== undefined || reply?.streamError !== undefined, 'the client sees the connection fail')
  t.equal(total(counted), 1, `one refused handshake counted (${JSON.stringify(counted)})`)
  t.same(counted, { untrusted: 1 }, 'counted as untrusted')
  await stillServing(t, 'untrusted')
})

t.test('an expired client certificate from the mesh CA is refused', async (t) => {
  const expired = await party(meshCa, CLIENT, { now: new Date(Date.now() - 30_000), ttlMs: 10_000 })
  const cert = new X509Certificate(expired.cert)
  t.ok(new Date(cert.validTo).getTime() < Date.now(), `the certificate expired at ${cert.validTo}`)
  let reply: Reply | undefined
  const counted = await countedBy(web, async () => { reply = await toWeb(expired) })
  t.equal(reply?.status, undefined, `no response (client saw ${reply?.sessionError ?? reply?.streamError})`)
  t.equal(total(counted), 1, `one refused handshake counted (${JSON.stringify(counted)})`)
  t.same(counted, { expired: 1 }, 'counted as expired')
  await stillServing(t, 'expired')
})

t.test('a client without a certificate is refused', async (t) => {
  let reply: Reply | undefined
  const counted = await countedBy(web, async () => { reply = await toWeb() })
  t.equal(reply?.status, undefined, `no response (client saw ${reply?.sessionError ?? reply?.streamError})`)
  t.same(counted, { 'no-client-certificate': 1 }, 'counted as no-client-certificate')
  await stillServing(t, 'no client certificate')
})

t.test('a TLS 1.2 client is refused, even with a valid certificate', async (t) => {
  let reply: Reply | undefined
  const counted = await countedBy(web, async () => { reply = await toWeb({ ...await valid, maxVersion: 'TLSv1.2' }) })
  t.equal(reply?.status, undefined, `no response (client saw ${reply?.sessionError ?? reply?.streamError})`)
  t.match(reply?.sessionError, /PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL/, 'the client is told the version is not supported')
  t.same(counted, { 'protocol-version': 1 }, 'counted as protocol-version')
  await stillServing(t, 'TLS 1.2')
})

t.test('plaintext HTTP/1.1 and h2c to a strict inbound port get 403 mtls required', async (t) => {
  const seen = webApp.requests
  let h1: { status: number, error: string | undefined, body: string } | undefined
  let h2c: Reply | undefined
  const counted = await countedBy(web, async () => {
    const res = await request(`http://127.0.0.1:${webInbound}/plain`, { headers: { host: 'web', 'remora-client-id': CLIENT } })
    h1 = { status: res.statusCode, error: res.headers['remora-proxy-error'] as string | undefined, body: await res.body.text() }
    h2c = await h2(`http://127.0.0.1:${webInbound}`, {}, { 'remora-client-id': CLIENT })
  }, false)
  t.equal(h1?.status, 403, 'HTTP/1.1: 403')
  t.equal(h1?.error, 'mtls required', 'HTTP/1.1: remora-proxy-error: mtls required')
  t.match(h1?.body, /mtls required/, 'HTTP/1.1: the body says why')
  t.equal(h2c?.status, 403, 'h2c: 403')
  t.equal(h2c?.headers['remora-proxy-error'], 'mtls required', 'h2c: remora-proxy-error: mtls required')
  t.same(counted, { plaintext: 2 }, 'counted as plaintext, once per request')
  t.equal(webApp.requests, seen, 'the app saw neither')
  await stillServing(t, 'plaintext')
})

t.test('a valid mesh certificate works directly; the app sees the verified identity, never a forged header', async (t) => {
  const seen = webApp.requests
  const ok = await toWeb(await valid, { 'remora-client-id': id('admin') })
  t.equal(ok.status, 200, `client's certificate, directly: 200 (${ok.sessionError ?? 'answered'})`)
  t.equal(ok.body, `web ${CLIENT}`, 'remora-client-id is the certificate\'s SPIFFE ID, not the forged one')
  t.equal(webApp.requests, seen + 1, 'the app saw it once')

  // A valid certificate for a mesh identity web's allow list does not name: TLS passes, authorization refuses.
  const other = await toWeb(await party(meshCa, id('intruder')))
  t.equal(other.status, 403, 'an identity not on the allow list: 403')
  t.equal(other.headers['remora-proxy-error'], 'forbidden', 'remora-proxy-error: forbidden')
  t.equal(webApp.requests, seen + 1, 'the app never saw the forbidden call')
  await stillServing(t, 'valid')
})

t.test('an endpoint that presents another identity than the table expects: 502 peer identity mismatch', async (t) => {
  const get = async (): Promise<{ status: number, error: string | undefined, body: string }> => {
    const res = await request(`${client.proxyUrl}/mismatch`, { headers: { host: 'web' } })
    return { status: res.statusCode, error: res.headers['remora-proxy-error'] as string | undefined, body: await res.body.text() }
  }
  const before = (await tlsFailures(client, 'outbound'))['identity-mismatch'] ?? 0
  await mesh.write(spec(id('someone-else')))
  let last = await get()
  await eventually(async () => (last = await get()).status === 502, 10_000, 'the client sidecar refuses web as someone-else')
  t.equal(last.error, 'peer identity mismatch', last.body)
  const seen = webApp.requests
  const again = await get()
  t.equal(again.status, 502, 'every request fails while the identity is wrong')
  t.equal(again.error, 'peer identity mismatch', 'with the same reason')
  t.equal(webApp.requests, seen, 'the request never reached the app')
  const counted = await tlsFailures(client, 'outbound')
  t.ok((counted['identity-mismatch'] ?? 0) > before, `counted outbound as identity-mismatch (${JSON.stringify(counted)})`)
  t.ok(alive(client) && alive(web), 'both sidecars alive')

  await mesh.write(spec())
  await eventually(async () => (last = await get()).status === 200, 10_000, 'web is reached again after the restore')
  t.equal(last.body, `web ${CLIENT}`, 'served by web again')
  await stillServing(t, 'identity restored')
})

const controlUrl = `https://127.0.0.1:${control.discoveryPort}`
const toControl = (headers: OutgoingHttpHeaders, body?: string, peer?: Partial<Party>, firstLine = false): Promise<Reply> =>
  h2(controlUrl, { ca: rootPem, ...peer }, headers, body, firstLine)
const certificateRequest = async (token: string, identity: string): Promise<{ reply: Reply, key: string }> => {
  const key = await generateWorkloadKey()
  const reply = await toControl({ ':method': 'POST', ':path': '/v1/certificate', 'content-type': 'application/json', authorization: `Bearer ${token}` },
    JSON.stringify({ csr: await createCsr(key, identity) }))
  return { reply, key: key.privateKeyPem }
}
/** Everything the control plane answered in these tests, searched for the CA key at the end. */
const answered: string[] = []
let webCert: Party | undefined

t.test('the CA signs only for the identity the token proves', async (t) => {
  const mismatch = await certificateRequest('token-web-0123456789abcdef', CLIENT)
  answered.push(mismatch.reply.body)
  t.equal(mismatch.reply.status, 403, `web's token, client's identity: 403 (${mismatch.reply.sessionError ?? 'answered'})`)
  t.equal((JSON.parse(mismatch.reply.body) as { error: { code: string } }).error.code, 'identity_mismatch', 'a CSR for another identity: 403 identity_mismatch')
  await eventually(() => control.output.split('\n').some((l) => l.includes('certificate refused') && l.includes(WEB) && l.includes(CLIENT)), 3000, 'the refusal is logged')
  const line = control.output.split('\n').find((l) => l.includes('certificate refused') && l.includes(WEB) && l.includes(CLIENT)) ?? ''
  t.match(JSON.parse(line), { proven: WEB, requested: [CLIENT], reason: 'identity-mismatch' }, 'the log line names the proven and the requested identity')
  t.notOk(line.includes('token-web-0123456789abcdef'), 'and not the token')

  const badToken = await certificateRequest('token-nobody-0123456789abcdef', WEB)
  answered.push(badToken.reply.body)
  t.equal(badToken.reply.status, 401, 'a token nobody has: 401')
  t.equal((JSON.parse(badToken.reply.body) as { error: { code: string } }).error.code, 'unauthenticated', 'unauthenticated')

  const own = await certificateRequest('token-web-0123456789abcdef', WEB)
  answered.push(own.reply.body)
  t.equal(own.reply.status, 200, 'its own identity: 200')
  const issued = JSON.parse(own.reply.body) as { identity: string, certificateChain: string[], trustAnchors: string[] }
  t.equal(issued.identity, WEB, 'for the proven identity')
  t.equal(issued.certificateChain.length, 2, 'leaf and issuer')
  t.equal(certificateInfo(issued.certificateChain[0]).identity, WEB, 'the leaf carries the proven identity')
  t.equal(new X509Certificate(issued.certificateChain[0]).subjectAltName, `URI:${WEB}`, 'as its only SAN')
  t.ok(new X509Certificate(issued.certificateChain[0]).checkIssued(new X509Certificate(issued.certificateChain[1])), 'signed by the issuer')
  t.same(issued.trustAnchors, [rootPem], 'the trust anchors are the root')
  webCert = { key: own.key, cert: issued.certificateChain.join('') }
})

t.test('the CA key never leaves the control plane', async (t) => {
  for (const path of ['/catalog.json', '/metrics', '/live', '/ready']) {
    const res = await fetch(`${control.adminUrl}${path}`)
    t.equal(res.status, 200, path)
    answered.push(await res.text())
  }
  const anonymous = await toControl({ ':path': '/v1/watch?authority=web.test:80' })
  t.equal(anonymous.status, 401, 'a watch needs a mesh certificate')
  answered.push(anonymous.body)
  const watch = await toControl({ ':path': '/v1/watch?authority=web.test:80' }, undefined, webCert, true)
  t.equal(watch.status, 200, 'a watch with the certificate just issued')
  t.match(watch.body, /^\{"type":"snapshot"/, 'a watch answers a snapshot')
  answered.push(watch.body)

  // The PEM; each line of its base64 body that is not public (PKCS#8 ends with the public key, which the issuer
  // certificate carries too); and the private scalar itself, in the encodings a careless log might use.
  const d = Buffer.from(createPrivateKey(issuerKeyPem).export({ format: 'jwk' }).d as string, 'base64url')
  const secrets = [
    issuerKeyPem.trim(),
    ...issuerKeyPem.split('\n').filter((l) => l.length >= 16 && !l.startsWith('-----') && !issuerPem.includes(l)),
    d.toString('base64url'), d.toString('base64'), d.toString('hex'),
  ]
  t.ok(secrets.length >= 5, 'the key has private lines to look for')
  const places: Array<[string, string]> = [
    ...answered.map((text, i): [string, string] => [`control plane answer ${i}`, text]),
    ['control plane log', control.output],
    ...sidecars.map((s): [string, string] => [`${s.name} sidecar log`, s.output]),
  ]
  t.ok(places.length >= 12, `${places.length} answers and logs searched`)
  for (const [where, text] of places) {
    t.notOk(secrets.some((s) => text.includes(s)), `${where}: no issuer key`)
    t.notOk(text.includes('PRIVATE KEY'), `${where}: no "PRIVATE KEY"`)
  }
})

t.test('a permissive workload takes plaintext from anyone and mTLS from sidecars on one port', async (t) => {
  let plain: { status: number, body: string } | undefined
  let h2c: Reply | undefined
  const counted = await countedBy(open, async () => {
    const res = await request(`http://127.0.0.1:${openInbound}/plain`, { headers: { host: 'open', 'remora-client-id': CLIENT } })
    plain = { status: res.statusCode, body: await res.body.text() }
    h2c = await h2(`http://127.0.0.1:${openInbound}`, {}, { 'remora-client-id': CLIENT })
  }, false)
  t.equal(plain?.status, 200, 'plaintext HTTP/1.1 is let in')
  t.equal(plain?.body, 'open none', 'a plaintext caller has no identity, whatever header it sends')
  t.equal(h2c?.status, 200, 'so is h2c')
  t.equal(h2c?.body, 'open none', 'without an identity either')
  t.same(counted, {}, 'plaintext is no handshake failure on a permissive port')

  const meshed = await request(`${client.proxyUrl}/meshed`, { headers: { host: 'open' } })
  t.equal(meshed.statusCode, 200, 'a sidecar reaches the permissive workload')
  t.equal(await meshed.body.text(), `open ${CLIENT}`, 'a sidecar caller arrives over mTLS with its identity')
  t.ok(sidecars.every(alive), 'every sidecar process is alive')
})
