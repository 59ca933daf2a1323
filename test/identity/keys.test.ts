// Sidecar side: its own P-256 key (usable by node:tls, hidden from logs), the CSR it sends, and reading its certificate.
import t from 'tap'
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import { execFile } from 'node:child_process'
import { KeyObject, createPrivateKey } from 'node:crypto'
import { join } from 'node:path'
import tls from 'node:tls'
import util, { promisify } from 'node:util'
import { CertificateAuthority } from '../../src/identity/ca.ts'
import { RENEW_AT_FRACTION, certificateInfo, createCsr, generateWorkloadKey } from '../../src/identity/keys.ts'

x509.cryptoProvider.set(globalThis.crypto)

const WEB = 'spiffe://cluster.local/ns/demo/sa/web'
const exec = promisify(execFile)

t.test('a workload key is ECDSA P-256, fresh each time, and usable by node:tls', async (t) => {
  const key = await generateWorkloadKey()
  const other = await generateWorkloadKey()
  t.match(key.cryptoKeyPair.privateKey.algorithm, { name: 'ECDSA', namedCurve: 'P-256' })
  t.equal(key.cryptoKeyPair.privateKey.type, 'private')
  t.ok(key.privateKey instanceof KeyObject)
  t.equal(key.privateKey.asymmetricKeyType, 'ec')
  t.equal(key.privateKey.asymmetricKeyDetails?.namedCurve, 'prime256v1')
  t.match(key.privateKeyPem, /^-----BEGIN PRIVATE KEY-----\n[\s\S]+-----END PRIVATE KEY-----\n$/)
  t.match(key.publicKeyPem, /^-----BEGIN PUBLIC KEY-----\n/)
  t.match(key.publicKeySha256, /^[0-9a-f]{64}$/)
  t.not(key.publicKeySha256, other.publicKeySha256)
  t.not(key.privateKeyPem, other.privateKeyPem)
  t.equal(createPrivateKey(key.privateKeyPem).export({ format: 'jwk' }).d, key.privateKey.export({ format: 'jwk' }).d, 'PEM and KeyObject are the same key')

  const ca = await CertificateAuthority.create({ trustDomain: 'cluster.local' })
  const issued = await ca.sign(await createCsr(key, WEB), WEB)
  t.doesNotThrow(() => tls.createSecureContext({ key: key.privateKeyPem, cert: issued.chainPem.join(''), ca: [...issued.trustAnchorsPem] }), 'key and certificate make a TLS context')
  t.throws(() => tls.createSecureContext({ key: other.privateKeyPem, cert: issued.chainPem.join('') }), { message: /key values mismatch/ }, 'and another key does not fit it')
})

t.test('the key material stays out of JSON and util.inspect', async (t) => {
  const key = await generateWorkloadKey()
  const d = String(key.privateKey.export({ format: 'jwk' }).d)
  for (const text of [JSON.stringify(key), JSON.stringify({ key }), util.inspect(key), util.inspect({ key }, { showHidden: true, depth: Infinity }), util.format('%o %j', key, key)]) {
    t.notMatch(text, 'PRIVATE KEY')
    t.notOk(text.includes(d), 'no private scalar')
    t.notOk(text.includes(key.privateKeyPem.split('\n')[1]), 'no PEM body')
  }
  t.same(JSON.parse(JSON.stringify(key)), { algorithm: 'ECDSA P-256', publicKeySha256: key.publicKeySha256 })
  t.equal(util.inspect(key), `WorkloadKey { ECDSA P-256, public key sha256 ${key.publicKeySha256} }`)
})

t.test('the CSR carries the identity as its one URI SAN, signed by the key', async (t) => {
  const key = await generateWorkloadKey()
  const pem = await createCsr(key, WEB)
  t.match(pem, /^-----BEGIN CERTIFICATE REQUEST-----\n[\s\S]+-----END CERTIFICATE REQUEST-----\n$/)
  const csr = new x509.Pkcs10CertificateRequest(pem)
  t.equal(await csr.verify(), true)
  t.equal(csr.subject, '', 'no subject: SPIFFE identifies by the URI SAN')
  t.same(new x509.SubjectAlternativeNameExtension(csr.extensions[0].rawData).names.toJSON(), [{ type: 'url', value: WEB }])
  const spki = Buffer.from(await globalThis.crypto.subtle.exportKey('spki', key.cryptoKeyPair.publicKey))
  t.ok(Buffer.from(csr.publicKey.rawData).equals(spki), 'the CSR is for this key')

  const dir = t.testdir({ 'csr.pem': pem })
  const out = await exec('openssl', ['req', '-in', join(dir, 'csr.pem'), '-noout', '-verify', '-text'])
  t.match(out.stdout + out.stderr, /verify OK/, 'openssl verifies the self-signature')
  t.match(out.stdout, /URI:spiffe:\/\/cluster\.local\/ns\/demo\/sa\/web/)
  t.match(out.stdout, /ASN1 OID: prime256v1/)

  await t.rejects(createCsr(key, 'spiffe://cluster.local/web'), { message: /invalid SPIFFE ID "spiffe:\/\/cluster\.local\/web"/ }, 'only a mesh identity')
})

t.test('certificateInfo reads validity, identity, serial and when to renew', async (t) => {
  const ca = await CertificateAuthority.create({ trustDomain: 'cluster.local' })
  const now = new Date(Math.floor(Date.now() / 1000) * 1000)
  const issued = await ca.sign(await createCsr(await generateWorkloadKey(), WEB), WEB, { now })
  const info = certificateInfo(issued.certificatePem)
  t.equal(info.identity, WEB)
  t.equal(info.serial, issued.serial)
  t.equal(info.notBefore.getTime(), now.getTime() - 60_000)
  t.equal(info.notAfter.getTime(), now.getTime() + 24 * 3600_000)
  t.equal(RENEW_AT_FRACTION, 0.7)
  t.equal(info.renewAt.getTime(), info.notBefore.getTime() + Math.round((info.notAfter.getTime() - info.notBefore.getTime()) * 0.7), 'renew at 70 % of the lifetime')
  t.ok(Object.isFrozen(info))
  t.same(certificateInfo(issued.chainPem.join('')), info, 'a chain is read by its first certificate, the leaf')
  t.equal(certificateInfo(issued.trustAnchorsPem[0]).identity, 'spiffe://cluster.local', 'a CA certificate names its trust domain')

  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' }
  const keys = await globalThis.crypto.subtle.generateKey(alg, false, ['sign', 'verify'])
  const noSan = await x509.X509CertificateGenerator.createSelfSigned({ name: 'CN=web', keys, signingAlgorithm: alg })
  t.throws(() => certificateInfo(noSan.toString('pem')), { message: /has no subject alternative names, so no SPIFFE ID/ })
  t.throws(() => certificateInfo('nonsense'), 'not a certificate')
})
