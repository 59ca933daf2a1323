// The mesh CA: certificates it signs work in real TLS 1.3 (both ways), pass openssl, carry the right extensions;
// bad CSRs are refused with the right reason; load() checks what it is given; the private key never shows.
import t from 'tap'
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import { execFile } from 'node:child_process'
import { X509Certificate, createPrivateKey, generateKeyPairSync, type webcrypto } from 'node:crypto'
import { join } from 'node:path'
import tls from 'node:tls'
import util, { promisify } from 'node:util'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { CLOCK_SKEW_MS, CertificateAuthority, type IssuedCertificate } from '../../src/identity/ca.ts'
import { CsrRefused } from '../../src/errors.ts'
import { createCsr, generateWorkloadKey } from '../../src/identity/keys.ts'
import { spiffeIdOf } from '../../src/identity/svid.ts'

x509.cryptoProvider.set(globalThis.crypto)

const TD = 'cluster.local'
const WEB = 'spiffe://cluster.local/ns/demo/sa/web'
const API = 'spiffe://cluster.local/ns/demo/sa/api'
const P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' }
const exec = promisify(execFile)

const ca = await CertificateAuthority.create({ trustDomain: TD })
const otherCa = await CertificateAuthority.create({ trustDomain: TD })

interface Party { key: string, cert: string, identity: string }

async function workload (authority: CertificateAuthority, identity: string, options: { now?: Date, ttlMs?: number, chain?: boolean } = {}): Promise<Party & { issued: IssuedCertificate }> {
  const key = await generateWorkloadKey()
  const issued = await authority.sign(await createCsr(key, identity), identity, options)
  const cert = options.chain === false ? issued.certificatePem : issued.chainPem.join('')
  return { key: key.privateKeyPem, cert, identity, issued }
}

interface Outcome {
  /** What the server sent back: 'hi' when the connection was accepted both ways. */
  reply: string
  clientError?: string
  serverAccepted: boolean
  serverSawClient?: string
  serverAuthorizationError?: string
  clientSawServer?: string
  protocol?: string | null
}

/**
 * One TLS 1.3 connection over 127.0.0.1: the server requests a client certificate and trusts `trust`; the client
 * trusts `trust` too and checks the server's SPIFFE ID (node's hostname check does not apply to URI SANs).
 */
async function connect (t: { teardown (fn: () => void): void }, server: Party, client: Party, trust: readonly string[], options: { strict?: boolean } = {}): Promise<Outcome> {
  const out: Outcome = { reply: '', serverAccepted: false }
  const srv = tls.createServer({
    key: server.key, cert: server.cert, ca: [...trust], requestCert: true, rejectUnauthorized: options.strict ?? true, minVersion: 'TLSv1.3',
  }, (socket) => {
    out.serverAccepted = true
    out.serverAuthorizationError = socket.authorizationError == null ? undefined : String(socket.authorizationError)
    const peer = socket.getPeerX509Certificate()
    if (peer !== undefined) out.serverSawClient = spiffeIdOf(peer)
    socket.end('hi')
  })
  srv.on('tlsClientError', () => {})
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  t.teardown(() => srv.close())
  const { port } = srv.address() as { port: number }
  await new Promise<void>((resolve) => {
    const socket = tls.connect({
      host: '127.0.0.1', port, key: client.key, cert: client.cert, ca: [...trust], minVersion: 'TLSv1.3',
      checkServerIdentity: (_host, cert) => {
        out.clientSawServer = spiffeIdOf(new X509Certificate(cert.raw))
        return out.clientSawServer === server.identity ? undefined : new Error(`server is ${out.clientSawServer}, expected ${server.identity}`)
      },
    })
    socket.on('secureConnect', () => { out.protocol = socket.getProtocol() })
    socket.setEncoding('utf8')
    socket.on('data', (d: string) => { out.reply += d })
    socket.on('error', (err: NodeJS.ErrnoException) => { out.clientError ??= err.code ?? err.message })
    socket.on('close', () => resolve())
  })
  return out
}

t.test('a signed leaf with its chain works as server and client certificate in TLS 1.3', async (t) => {
  const server = await workload(ca, WEB)
  const client = await workload(ca, API)
  const out = await connect(t, server, client, ca.trustAnchorsPem)
  t.equal(out.clientError, undefined)
  t.equal(out.protocol, 'TLSv1.3')
  t.equal(out.reply, 'hi')
  t.equal(out.clientSawServer, WEB, 'the client verified the server and read its SPIFFE ID')
  t.equal(out.serverSawClient, API, 'the server verified the client and read its SPIFFE ID')
  t.equal(out.serverAuthorizationError, undefined)
  t.same(ca.trustAnchorsPem, server.issued.trustAnchorsPem)
  t.equal(ca.trustAnchorsPem.length, 1, 'only the root is a trust anchor')
})

t.test('certificates from another CA, even with the same trust domain and names, are refused', async (t) => {
  const good = await workload(ca, WEB)
  const foreign = await workload(otherCa, API)
  const asServer = await connect(t, { ...foreign, identity: API }, good, ca.trustAnchorsPem)
  t.match(asServer.clientError, /^(UNABLE_TO_GET_ISSUER_CERT_LOCALLY|UNABLE_TO_VERIFY_LEAF_SIGNATURE|CERT_SIGNATURE_FAILURE)$/, 'the client refuses the server')
  t.equal(asServer.serverAccepted, false)
  t.equal(asServer.reply, '')

  const asClient = await connect(t, good, foreign, ca.trustAnchorsPem)
  t.equal(asClient.serverAccepted, false, 'the server drops the client')
  t.equal(asClient.reply, '')
  const lenient = await connect(t, good, foreign, ca.trustAnchorsPem, { strict: false })
  t.match(lenient.serverAuthorizationError, /^(UNABLE_TO_GET_ISSUER_CERT_LOCALLY|UNABLE_TO_VERIFY_LEAF_SIGNATURE|CERT_SIGNATURE_FAILURE)$/, 'and why')
})

t.test('an expired leaf is refused with CERT_HAS_EXPIRED', async (t) => {
  const expired = await workload(ca, WEB, { now: new Date(Date.now() - 2 * 3600_000), ttlMs: 60_000 })
  t.ok(expired.issued.notAfter.getTime() < Date.now())
  const good = await workload(ca, API)
  const asServer = await connect(t, expired, good, ca.trustAnchorsPem)
  t.equal(asServer.clientError, 'CERT_HAS_EXPIRED')
  t.equal(asServer.reply, '')
  const asClient = await connect(t, good, expired, ca.trustAnchorsPem)
  t.equal(asClient.serverAccepted, false)
  t.equal(asClient.reply, '')
  const lenient = await connect(t, good, expired, ca.trustAnchorsPem, { strict: false })
  t.equal(lenient.serverAuthorizationError, 'CERT_HAS_EXPIRED')
})

t.test('the issuer is not a trust anchor: a leaf sent without it is refused', async (t) => {
  const bare = await workload(ca, WEB, { chain: false })
  const out = await connect(t, bare, await workload(ca, API), ca.trustAnchorsPem)
  t.match(out.clientError, /^(UNABLE_TO_GET_ISSUER_CERT_LOCALLY|UNABLE_TO_VERIFY_LEAF_SIGNATURE)$/)
})

t.test('the leaf as node and openssl see it', async (t) => {
  const now = new Date(Math.floor(Date.now() / 1000) * 1000)
  const key = await generateWorkloadKey()
  const issued = await ca.sign(await createCsr(key, WEB), WEB, { now })
  const leaf = new X509Certificate(issued.certificatePem)
  const issuer = new X509Certificate(issued.chainPem[1])
  const root = new X509Certificate(issued.trustAnchorsPem[0])
  t.equal(leaf.subjectAltName, `URI:${WEB}`, 'the one SAN is the URI')
  t.equal(leaf.subject, 'O=remora')
  t.equal(leaf.ca, false)
  t.ok(leaf.checkIssued(issuer) && leaf.verify(issuer.publicKey), 'signed by the issuer')
  t.ok(issuer.checkIssued(root) && issuer.verify(root.publicKey), 'the issuer is signed by the root')
  t.equal(issuer.ca, true)
  t.equal(root.subjectAltName, `URI:spiffe://${TD}`, 'the root carries the trust domain SPIFFE ID')
  t.equal(issuer.subjectAltName, `URI:spiffe://${TD}`, 'so does the issuer')
  t.same(leaf.keyUsage, ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'], 'extended key usage: serverAuth, clientAuth')
  t.equal(leaf.validFromDate.getTime(), now.getTime() - CLOCK_SKEW_MS, 'notBefore is one minute back for clock skew')
  t.equal(leaf.validToDate.getTime(), now.getTime() + 24 * 3600_000, 'a 24 h certificate by default')
  t.equal(issued.notAfter.getTime(), leaf.validToDate.getTime())
  t.equal(issued.identity, WEB)
  t.match(issued.serial, /^[4-7][0-9a-f]{31}$/, '16 bytes, positive, no leading zero')
  t.equal(leaf.serialNumber.toLowerCase(), issued.serial)
  t.equal(leaf.publicKey.export({ type: 'spki', format: 'pem' }), key.publicKeyPem, 'the certificate is for the workload key')
  const again = await ca.sign(await createCsr(key, WEB), WEB)
  t.not(again.serial, issued.serial, 'serials are random')

  const dir = t.testdir({
    'root.pem': issued.trustAnchorsPem.join(''),
    'issuer.pem': issued.chainPem[1],
    'leaf.pem': issued.certificatePem,
    'foreign.pem': (await workload(otherCa, WEB)).issued.certificatePem,
    'foreign-issuer.pem': (await workload(otherCa, WEB)).issued.chainPem[1],
  })
  for (const purpose of ['sslserver', 'sslclient']) {
    const { stdout } = await exec('openssl', ['verify', '-x509_strict', '-purpose', purpose, '-CAfile', join(dir, 'root.pem'), '-untrusted', join(dir, 'issuer.pem'), join(dir, 'leaf.pem')])
    t.equal(stdout.trim(), `${join(dir, 'leaf.pem')}: OK`, `openssl verify -x509_strict -purpose ${purpose}`)
  }
  const foreign = await exec('openssl', ['verify', '-CAfile', join(dir, 'root.pem'), '-untrusted', join(dir, 'foreign-issuer.pem'), join(dir, 'foreign.pem')]).then(() => 'OK', (err: { stdout: string, stderr: string }) => err.stdout + err.stderr)
  t.match(foreign, /error \d+ at \d+ depth lookup/, 'openssl refuses a leaf of another CA')

  const text = (await exec('openssl', ['x509', '-noout', '-text', '-in', join(dir, 'leaf.pem')])).stdout
  t.match(text, /Signature Algorithm: ecdsa-with-SHA256/)
  t.match(text, /Public Key Algorithm: id-ecPublicKey[\s\S]*NIST CURVE: P-256/)
  t.match(text, /Subject: O ?= ?remora\n/)
  t.match(text, /X509v3 Basic Constraints: critical\n\s+CA:FALSE\n/)
  t.match(text, /X509v3 Key Usage: critical\n\s+Digital Signature\n/, 'digitalSignature only (keyEncipherment is for RSA keys)')
  t.match(text, /X509v3 Extended Key Usage: \n\s+TLS Web Server Authentication, TLS Web Client Authentication\n/)
  t.match(text, /X509v3 Subject Alternative Name: \n\s+URI:spiffe:\/\/cluster\.local\/ns\/demo\/sa\/web\n/)
  t.match(text, /X509v3 Subject Key Identifier: \n\s+[0-9A-F:]{59}\n/)
  t.match(text, /X509v3 Authority Key Identifier: \n\s+(keyid:)?[0-9A-F:]{59}\n/)
  t.notMatch(text, /Key Encipherment|Certificate Sign|CRL Sign/)

  const issuerText = (await exec('openssl', ['x509', '-noout', '-text', '-in', join(dir, 'issuer.pem')])).stdout
  t.match(issuerText, /X509v3 Basic Constraints: critical\n\s+CA:TRUE, pathlen:0\n/)
  t.match(issuerText, /X509v3 Key Usage: critical\n\s+Certificate Sign, CRL Sign\n/)
  t.match(issuerText, /Subject: O ?= ?remora, CN ?= ?remora issuer CA \(cluster\.local\)/)
  t.match(issuerText, /URI:spiffe:\/\/cluster\.local\n/)
  const rootText = (await exec('openssl', ['x509', '-noout', '-text', '-in', join(dir, 'root.pem')])).stdout
  t.match(rootText, /X509v3 Basic Constraints: critical\n\s+CA:TRUE\n/)
  t.match(rootText, /X509v3 Key Usage: critical\n\s+Certificate Sign, CRL Sign\n/)
  t.match(rootText, /Issuer: O ?= ?remora, CN ?= ?remora root CA \(cluster\.local\)\n[\s\S]*Subject: O ?= ?remora, CN ?= ?remora root CA \(cluster\.local\)\n/)
  const skiOf = (text: string): string | undefined => /Subject Key Identifier: \n\s+([0-9A-F:]+)/.exec(text)?.[1]
  const akiOf = (text: string): string | undefined => /Authority Key Identifier: \n\s+(?:keyid:)?([0-9A-F:]+)/.exec(text)?.[1]
  t.equal(akiOf(text), skiOf(issuerText), 'leaf AKI = issuer SKI')
  t.equal(akiOf(issuerText), skiOf(rootText), 'issuer AKI = root SKI')
})

t.test('a leaf never outlives the issuer, and its lifetime is what was asked', async (t) => {
  const shortLived = await CertificateAuthority.create({ trustDomain: TD, issuerTtlMs: 3600_000 })
  const { issued } = await workload(shortLived, WEB)
  t.equal(issued.notAfter.getTime(), shortLived.issuerNotAfter.getTime(), 'a 24 h request ends with the issuer')
  const now = new Date(Math.floor(Date.now() / 1000) * 1000)
  const tenMinutes = await ca.sign(await createCsr(await generateWorkloadKey(), WEB), WEB, { now, ttlMs: 600_000 })
  t.equal(tenMinutes.notAfter.getTime(), now.getTime() + 600_000)
  await t.rejects(ca.sign(await createCsr(await generateWorkloadKey(), WEB), WEB, { ttlMs: 0 }), { message: /ttlMs must be a positive number/ })
  await t.rejects(shortLived.sign(await createCsr(await generateWorkloadKey(), WEB), WEB, { now: new Date(Date.now() + 2 * 3600_000) }),
    { message: /the issuer certificate expired at .*; the CA must be replaced/ })
  const expectedRootEnd = Date.now() + 3650 * 24 * 3600_000
  const root = new X509Certificate(ca.trustAnchorsPem[0])
  t.ok(Math.abs(root.validToDate.getTime() - expectedRootEnd) < 120_000, 'the root lasts 10 years')
  t.ok(Math.abs(ca.issuerNotAfter.getTime() - (Date.now() + 365 * 24 * 3600_000)) < 120_000, 'the issuer 1 year')
})

/** A CSR with any key and SANs, made with @peculiar/x509 directly. */
async function csrWith (names: x509.JsonGeneralName[] | undefined, keyAlg: webcrypto.EcKeyGenParams | webcrypto.RsaHashedKeyGenParams = P256, signAlg: webcrypto.Algorithm | webcrypto.EcdsaParams = P256): Promise<string> {
  const keys = await globalThis.crypto.subtle.generateKey(keyAlg, false, ['sign', 'verify']) as webcrypto.CryptoKeyPair
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys, signingAlgorithm: signAlg, extensions: names === undefined ? [] : [new x509.SubjectAlternativeNameExtension(names)],
  })
  return csr.toString('pem')
}

async function refusal (promise: Promise<unknown>): Promise<CsrRefused> {
  const err = await promise.then(() => undefined, (e: unknown) => e)
  if (!(err instanceof CsrRefused)) throw new Error(`expected CsrRefused, got ${String(err)}`)
  return err
}

t.test('a CSR is signed only for the identity the caller proved', async (t) => {
  const other = await refusal(ca.sign(await createCsr(await generateWorkloadKey(), API), WEB))
  t.equal(other.reason, 'identity-mismatch')
  t.equal(other.name, 'CsrRefused')
  t.ok(other instanceof Error)
  t.equal(other.message, `CSR refused (identity-mismatch): it asks for ${API} but the caller proved ${WEB}; a workload certificate carries exactly one URI SAN, the proven identity`)
  t.equal(other.proven, WEB)
  t.same(other.requested, [API])

  const two = await refusal(ca.sign(await csrWith([{ type: 'url', value: WEB }, { type: 'url', value: API }]), WEB))
  t.equal(two.reason, 'identity-mismatch', 'two URI SANs, even if one is the proven identity')
  t.match(two.message, `it asks for ${WEB}, ${API} but the caller proved ${WEB}`)
  const dns = await refusal(ca.sign(await csrWith([{ type: 'url', value: WEB }, { type: 'dns', value: 'web.demo.svc' }]), WEB))
  t.equal(dns.reason, 'identity-mismatch', 'names beyond the identity (a DNS SAN) are not granted')
  t.match(dns.message, 'dns:web.demo.svc')
  const none = await refusal(ca.sign(await csrWith(undefined), WEB))
  t.equal(none.reason, 'identity-mismatch')
  t.match(none.message, `it asks for no identity but the caller proved ${WEB}`)

  await t.rejects(ca.sign(await createCsr(await generateWorkloadKey(), 'spiffe://elsewhere.org/ns/demo/sa/web'), 'spiffe://elsewhere.org/ns/demo/sa/web'),
    { message: /cannot issue for spiffe:\/\/elsewhere\.org\/ns\/demo\/sa\/web: this CA is for trust domain cluster\.local/ }, 'another trust domain is the caller\'s bug, not a refusal')
  await t.rejects(ca.sign(await createCsr(await generateWorkloadKey(), WEB), 'spiffe://cluster.local/web'), { message: /invalid SPIFFE ID/ })
})

t.test('only the public key is taken from a CSR: asking to be a CA or for a subject changes nothing', async (t) => {
  const alg = P256
  const keys = await globalThis.crypto.subtle.generateKey(alg, false, ['sign', 'verify']) as webcrypto.CryptoKeyPair
  const greedy = await x509.Pkcs10CertificateRequestGenerator.create({
    keys, signingAlgorithm: alg, name: 'CN=root-of-all, O=evil',
    extensions: [
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: WEB }]),
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.digitalSignature, true),
    ],
  })
  const issued = await ca.sign(greedy.toString('pem'), WEB)
  const leaf = new X509Certificate(issued.certificatePem)
  t.equal(leaf.ca, false)
  t.equal(leaf.subject, 'O=remora')
  const parsed = new x509.X509Certificate(issued.certificatePem)
  t.equal(parsed.getExtension<x509.KeyUsagesExtension>('2.5.29.15')?.usages, x509.KeyUsageFlags.digitalSignature)
  t.equal(parsed.extensions.length, 6, 'basicConstraints, keyUsage, extKeyUsage, SKI, AKI, SAN: nothing more')
})

t.test('a tampered CSR, a foreign key type, or garbage is refused with the right reason', async (t) => {
  const csr = await createCsr(await generateWorkloadKey(), WEB)
  const der = Buffer.from(x509.PemConverter.decodeFirst(csr))
  const at = der.indexOf('sa/web')
  t.ok(at > 0)
  der.write('sa/api', at)
  const tampered = x509.PemConverter.encode(der, 'CERTIFICATE REQUEST')
  const bad = await refusal(ca.sign(tampered, API))
  t.equal(bad.reason, 'bad-signature', 'the SAN was changed from web to api after signing')
  t.match(bad.message, /its signature does not verify/)

  const rsa = await refusal(ca.sign(await csrWith([{ type: 'url', value: WEB }],
    { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }, { name: 'RSASSA-PKCS1-v1_5' }), WEB))
  t.equal(rsa.reason, 'wrong-key')
  t.match(rsa.message, /the key must be ECDSA P-256, the CSR has RSASSA-PKCS1-v1_5/)
  const p384 = await refusal(ca.sign(await csrWith([{ type: 'url', value: WEB }], { name: 'ECDSA', namedCurve: 'P-384' }, { name: 'ECDSA', hash: 'SHA-384' } as webcrypto.EcdsaParams), WEB))
  t.equal(p384.reason, 'wrong-key')
  t.match(p384.message, /the CSR has ECDSA P-384/)

  for (const [what, pem] of [
    ['not PEM', 'hello'],
    ['a certificate, not a CSR', ca.trustAnchorsPem[0]],
    ['junk inside the PEM', '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n'],
    ['too large', `-----BEGIN CERTIFICATE REQUEST-----\n${'A'.repeat(20_000)}\n-----END CERTIFICATE REQUEST-----\n`],
  ]) {
    const err = await refusal(ca.sign(pem, WEB))
    t.equal(err.reason, 'malformed', what)
  }
  t.match((await refusal(ca.sign('x', WEB))).message, 'CSR refused (malformed): expected a PEM "CERTIFICATE REQUEST"')
})

t.test('export and load round-trip', async (t) => {
  const files = ca.export()
  t.match(files.issuerKeyPem, /^-----BEGIN PRIVATE KEY-----\n/)
  t.equal(files.rootPem, ca.trustAnchorsPem[0])
  const loaded = await CertificateAuthority.load({ ...files, trustDomain: TD })
  t.same(loaded.toJSON(), ca.toJSON(), 'same root and issuer')
  t.same(loaded.trustAnchorsPem, ca.trustAnchorsPem)
  const server = await workload(loaded, WEB)
  const client = await workload(ca, API)
  const out = await connect(t, server, client, ca.trustAnchorsPem)
  t.equal(out.reply, 'hi', 'a certificate from the loaded CA works with one from the original')

  const sec1 = createPrivateKey(files.issuerKeyPem).export({ type: 'sec1', format: 'pem' }).toString()
  t.match(sec1, /^-----BEGIN EC PRIVATE KEY-----/)
  await t.resolves(CertificateAuthority.load({ ...files, issuerKeyPem: sec1, trustDomain: TD }), 'an EC PRIVATE KEY (SEC1) file loads too')
  const both = await CertificateAuthority.load({ ...files, rootPem: otherCa.trustAnchorsPem[0] + files.rootPem, trustDomain: TD })
  t.equal(both.trustAnchorsPem.length, 2, 'several roots (a root rotation) are all trust anchors')
})

t.test('load names the file that is wrong', async (t) => {
  const files = ca.export()
  const foreign = otherCa.export()
  const names = { root: '/etc/remora/ca/root.pem', issuer: '/etc/remora/ca/issuer.pem', issuerKey: '/etc/remora/ca/issuer-key.pem' }
  const load = (over: Partial<typeof files> & { trustDomain?: string, now?: Date }) => CertificateAuthority.load({ ...files, trustDomain: TD, names, ...over })

  await t.rejects(load({ issuerKeyPem: foreign.issuerKeyPem }),
    { message: '/etc/remora/ca/issuer-key.pem: this key does not belong to the issuer certificate in /etc/remora/ca/issuer.pem (its public key differs)' })
  await t.rejects(load({ issuerPem: foreign.issuerPem, issuerKeyPem: foreign.issuerKeyPem }),
    { message: /^\/etc\/remora\/ca\/issuer\.pem: not signed by the root in \/etc\/remora\/ca\/root\.pem \("O=remora, CN=remora issuer CA \(cluster\.local\)" names its issuer "O=remora, CN=remora root CA \(cluster\.local\)", and no root's key verifies its signature\)$/ })
  await t.rejects(load({ issuerKeyPem: 'not a key' }), { message: /^\/etc\/remora\/ca\/issuer-key\.pem: not a PEM private key/ })
  const rsaKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  await t.rejects(load({ issuerKeyPem: rsaKey }), { message: '/etc/remora/ca/issuer-key.pem: expected an ECDSA P-256 key, got rsa' })
  await t.rejects(load({ rootPem: '' }), { message: '/etc/remora/ca/root.pem: no PEM "CERTIFICATE" in it' })
  await t.rejects(load({ rootPem: files.rootPem + files.issuerKeyPem }), { message: '/etc/remora/ca/root.pem: holds a PEM "PRIVATE KEY"; expected only certificates' })
  await t.rejects(load({ rootPem: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' }), { message: /^\/etc\/remora\/ca\/root\.pem: cannot parse certificate/ })
  await t.rejects(load({ issuerPem: files.issuerPem + files.issuerPem }), { message: '/etc/remora/ca/issuer.pem: expected one certificate (the issuer), found 2' })
  await t.rejects(load({ rootPem: files.issuerPem }), { message: /^\/etc\/remora\/ca\/root\.pem: not a self-signed root \(issued by "O=remora, CN=remora root CA \(cluster\.local\)"\); give the trust anchor, not an intermediate$/ })
  const leaf = (await workload(ca, WEB)).issued.certificatePem
  await t.rejects(load({ issuerPem: leaf }), { message: '/etc/remora/ca/issuer.pem: "O=remora" is not a CA certificate (basicConstraints CA:true missing)' })
  await t.rejects(load({ now: new Date(Date.now() + 400 * 24 * 3600_000) }), { message: /^\/etc\/remora\/ca\/issuer\.pem: "O=remora, CN=remora issuer CA \(cluster\.local\)" expired at / })
  await t.rejects(load({ now: new Date(Date.now() - 3600_000) }), { message: /^\/etc\/remora\/ca\/root\.pem: ".*" is not valid until / })
  await t.rejects(load({ trustDomain: 'example.org' }), { message: '/etc/remora/ca/root.pem: "O=remora, CN=remora root CA (cluster.local)" carries spiffe://cluster.local, but the trust domain is example.org (expected spiffe://example.org)' })
  await t.rejects(CertificateAuthority.load({ ...files, issuerKeyPem: foreign.issuerKeyPem, trustDomain: TD }), { message: /^issuer key: this key does not belong to the issuer certificate in issuer certificate/ }, 'default names')
})

t.test('the private key is not in JSON, util.inspect or pino output', async (t) => {
  const keyPem = ca.export().issuerKeyPem
  const jwk = createPrivateKey(keyPem).export({ format: 'jwk' })
  const d = String(jwk.d)
  const secrets = [d, Buffer.from(d, 'base64url').toString('hex'), Buffer.from(d, 'base64url').toString('base64'), keyPem.split('\n')[1]]
  let logged = ''
  const log = pino({}, new Writable({ write (chunk, _enc, done) { logged += String(chunk); done() } }))
  log.info({ ca }, 'the CA')
  log.info(ca, 'the CA as bindings')
  const shown = [
    JSON.stringify(ca),
    JSON.stringify({ nested: { ca } }),
    util.inspect(ca),
    util.inspect(ca, { showHidden: true, depth: Infinity, getters: true }),
    util.format('%o %O %j', ca, ca, ca),
    String(ca),
    logged,
  ]
  for (const text of shown) {
    t.notMatch(text, 'PRIVATE KEY')
    for (const s of secrets) t.notOk(text.includes(s), 'no key material')
  }
  t.match(JSON.parse(JSON.stringify(ca)), { trustDomain: TD, roots: [{ subject: 'O=remora, CN=remora root CA (cluster.local)' }], issuer: { subject: 'O=remora, CN=remora issuer CA (cluster.local)' } })
  t.match(logged, /remora issuer CA/, 'what is logged is the public description')
  t.same(Object.keys(ca), [], 'no enumerable fields')
})

t.test('a serving certificate for the control plane: DNS, IP and its SPIFFE ID, checked by hostname', async (t) => {
  const cpId = 'spiffe://cluster.local/ns/remora-system/sa/remora-control'
  const served = await ca.issueServing({ dnsNames: ['localhost', 'remora-control.remora-system.svc'], ipAddresses: ['127.0.0.1', '::1'], identity: cpId })
  const leaf = new X509Certificate(served.certificatePem)
  t.equal(leaf.subjectAltName, `DNS:localhost, DNS:remora-control.remora-system.svc, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, URI:${cpId}`)
  t.equal(spiffeIdOf(leaf), cpId)
  t.same(leaf.keyUsage, ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'])
  t.notMatch(JSON.stringify(served), 'PRIVATE KEY', 'the key in the result does not serialize')
  t.notMatch(util.inspect(served), 'PRIVATE KEY')
  const srv = tls.createServer({ key: served.key.privateKeyPem, cert: served.chainPem.join(''), minVersion: 'TLSv1.3' }, (s) => s.end('control'))
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  t.teardown(() => srv.close())
  const { port } = srv.address() as { port: number }
  for (const host of ['localhost', '127.0.0.1']) {
    const reply = await new Promise<string>((resolve, reject) => {
      let text = ''
      // checkServerIdentity checks servername (DNS SAN), else host (IP SAN).
      const s = tls.connect({ host: '127.0.0.1', ...(host === 'localhost' ? { servername: host } : {}), port, ca: [...served.trustAnchorsPem], minVersion: 'TLSv1.3' })
      s.setEncoding('utf8')
      s.on('data', (d: string) => { text += d })
      s.on('error', reject)
      s.on('end', () => resolve(text))
    })
    t.equal(reply, 'control', `node's own hostname check passes for ${host}`)
  }
})

t.test('timings', async (t) => {
  const time = async (n: number, f: () => Promise<unknown>): Promise<number> => {
    const start = performance.now()
    for (let i = 0; i < n; i++) await f()
    return (performance.now() - start) / n
  }
  const create = await time(10, () => CertificateAuthority.create({ trustDomain: TD }))
  const csrs = await Promise.all(Array.from({ length: 200 }, async () => createCsr(await generateWorkloadKey(), WEB)))
  let i = 0
  const sign = await time(200, () => ca.sign(csrs[i++], WEB))
  const start = performance.now()
  await Promise.all(csrs.map((c) => ca.sign(c, WEB)))
  const concurrent = (performance.now() - start) / csrs.length
  const keygen = await time(100, () => generateWorkloadKey())
  const csr = await time(100, async () => createCsr(await generateWorkloadKey(), WEB))
  t.comment(`create ${create.toFixed(1)} ms, sign ${sign.toFixed(2)} ms (${concurrent.toFixed(2)} ms each when 200 at once), workload key ${keygen.toFixed(2)} ms, key + CSR ${csr.toFixed(2)} ms`)
  t.ok(sign < 250, 'signing is not the bottleneck of a rotation')
})
