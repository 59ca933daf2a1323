// SPIFFE IDs: parsing names what is wrong, formatting matches discovery, and a certificate yields its one SPIFFE ID.
import t from 'tap'
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import { X509Certificate } from 'node:crypto'
import { checkSpiffeUri, spiffeId, checkTrustDomain, formatSpiffeId, isSpiffeId, parseSpiffeId, trustDomainId } from '../../src/mesh/spiffe-id.ts'
import { generalNames, spiffeIdOf } from '../../src/identity/svid.ts'

x509.cryptoProvider.set(globalThis.crypto)

t.test('a workload identity parses into its parts and formats back', async (t) => {
  t.same(parseSpiffeId('spiffe://cluster.local/ns/demo/sa/web'), { trustDomain: 'cluster.local', namespace: 'demo', serviceAccount: 'web' })
  t.same(parseSpiffeId('spiffe://prod_eu.example.com/ns/kube-system/sa/coredns.v2'),
    { trustDomain: 'prod_eu.example.com', namespace: 'kube-system', serviceAccount: 'coredns.v2' }, 'a service account may hold dots')
  const parts = { trustDomain: 'cluster.local', namespace: 'demo', serviceAccount: 'web' }
  t.equal(formatSpiffeId(parts), 'spiffe://cluster.local/ns/demo/sa/web')
  t.equal(formatSpiffeId(parts), spiffeId('cluster.local', 'demo', 'web'), 'the same string discovery/service.ts makes')
  t.same(parseSpiffeId(formatSpiffeId(parts)), parts)
  t.equal(isSpiffeId('spiffe://cluster.local/ns/demo/sa/web'), true)
  t.equal(isSpiffeId('spiffe://cluster.local'), false)
  t.equal(trustDomainId('cluster.local'), 'spiffe://cluster.local')
  t.equal(checkTrustDomain('cluster.local'), 'cluster.local')
  t.same(checkSpiffeUri('spiffe://example.org/a/b-c/d_e.f'), { trustDomain: 'example.org', segments: ['a', 'b-c', 'd_e.f'] }, 'any SPIFFE path is a SPIFFE ID')
})

t.test('a bad SPIFFE ID is refused with a message naming what is wrong', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['http://cluster.local/ns/demo/sa/web', /must start with "spiffe:\/\/"/],
    ['SPIFFE://cluster.local/ns/demo/sa/web', /must start with "spiffe:\/\/"/],
    ['spiffe:///ns/demo/sa/web', /the trust domain is empty/],
    ['spiffe://Cluster.local/ns/demo/sa/web', /trust domain "Cluster\.local" may hold only lower-case/],
    ['spiffe://cluster.local:8443/ns/demo/sa/web', /no port/],
    ['spiffe://admin@cluster.local/ns/demo/sa/web', /no port, user/],
    [`spiffe://${'a'.repeat(256)}/ns/demo/sa/web`, /longer than 255 characters/],
    ['spiffe://cluster.local', /names only a trust domain, not a workload/],
    ['spiffe://cluster.local/', /empty segment/],
    ['spiffe://cluster.local/ns/demo/sa/web/', /empty segment \(a doubled or trailing "\/"\)/],
    ['spiffe://cluster.local/ns//sa/web', /empty segment/],
    ['spiffe://cluster.local/ns/demo/sa/web?x=1', /path segment "web\?x=1" may hold only/],
    ['spiffe://cluster.local/ns/demo/sa/web#frag', /no query, fragment/],
    ['spiffe://cluster.local/ns/demo/sa/%77eb', /percent-encoding/],
    ['spiffe://cluster.local/ns/demo/sa/../web', /may not contain "\.\." segments/],
    ['spiffe://cluster.local/demo/web', /the path "\/demo\/web" does not have the form \/ns\/<namespace>\/sa\/<service-account>/],
    ['spiffe://cluster.local/sa/web/ns/demo', /does not have the form/],
    ['spiffe://cluster.local/ns/demo/sa/web/extra', /does not have the form/],
    ['spiffe://cluster.local/ns/Demo/sa/web', /namespace "Demo" must be a DNS label/],
    [`spiffe://cluster.local/ns/${'n'.repeat(64)}/sa/web`, /must be a DNS label: .* at most 63/],
    ['spiffe://cluster.local/ns/demo/sa/web_api', /service account "web_api" must be a DNS subdomain/],
    ['spiffe://cluster.local/ns/demo/sa/-web', /service account "-web"/],
    [`spiffe://cluster.local/ns/demo/sa/${'a'.repeat(2048)}`, /longer than 2048 characters/],
  ]
  for (const [id, message] of cases) {
    t.throws(() => parseSpiffeId(id), { message }, id.length > 80 ? `${id.slice(0, 60)}...` : id)
  }
  t.throws(() => parseSpiffeId('spiffe://cluster.local/x'), { message: /^invalid SPIFFE ID "spiffe:\/\/cluster\.local\/x": .*expected spiffe:\/\/<trust-domain>\/ns\/<namespace>\/sa\/<service-account>$/ },
    'the message quotes the ID and shows the expected shape')
  t.throws(() => parseSpiffeId(42 as unknown as string), { message: /not a string/ })
  t.throws(() => formatSpiffeId({ trustDomain: 'cluster.local', namespace: 'demo', serviceAccount: 'a/b' }), { message: /does not have the form/ })
  t.throws(() => checkTrustDomain('Cluster.Local'), { message: /^invalid SPIFFE trust domain: .*lower-case/ })
  t.throws(() => trustDomainId(''), { message: /the trust domain is empty/ })
})

/** A self-signed certificate with the given SANs (no SAN extension when `names` is undefined). */
async function certWith (names: x509.JsonGeneralName[] | undefined, extra: x509.Extension[] = []): Promise<x509.X509Certificate> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' }
  const keys = await globalThis.crypto.subtle.generateKey(alg, false, ['sign', 'verify'])
  return x509.X509CertificateGenerator.createSelfSigned({
    name: 'O=test', keys, signingAlgorithm: alg,
    extensions: [...(names === undefined ? [] : [new x509.SubjectAlternativeNameExtension(names)]), ...extra],
  })
}

t.test('spiffeIdOf reads the one URI SAN of a certificate, from @peculiar/x509 or node:crypto', async (t) => {
  const id = 'spiffe://cluster.local/ns/demo/sa/web'
  const cert = await certWith([{ type: 'dns', value: 'web.demo.svc' }, { type: 'url', value: id }, { type: 'ip', value: '127.0.0.1' }])
  t.equal(spiffeIdOf(cert), id, 'DNS and IP SANs beside it are fine')
  const nodeCert = new X509Certificate(cert.toString('pem'))
  t.equal(spiffeIdOf(nodeCert), id, 'a node:crypto X509Certificate works too')
  t.same(parseSpiffeId(spiffeIdOf(nodeCert)), { trustDomain: 'cluster.local', namespace: 'demo', serviceAccount: 'web' })
  t.equal(spiffeIdOf(await certWith([{ type: 'url', value: 'spiffe://cluster.local' }])), 'spiffe://cluster.local', 'a CA certificate names its trust domain')
})

t.test('spiffeIdOf rejects certificates without exactly one SPIFFE URI SAN', async (t) => {
  const bare = new X509Certificate((await certWith(undefined)).toString('pem'))
  t.throws(() => spiffeIdOf(bare), { message: /has no subject alternative names, so no SPIFFE ID/ })
  const dnsOnly = await certWith([{ type: 'dns', value: 'web.demo.svc' }])
  t.throws(() => spiffeIdOf(dnsOnly), { message: /has no URI SAN, so no SPIFFE ID/ })
  const twoIds = await certWith([{ type: 'url', value: 'spiffe://cluster.local/ns/a/sa/one' }, { type: 'url', value: 'spiffe://cluster.local/ns/a/sa/two' }])
  t.throws(() => spiffeIdOf(twoIds),
    { message: /has 2 URI SANs \(spiffe:\/\/cluster\.local\/ns\/a\/sa\/one, spiffe:\/\/cluster\.local\/ns\/a\/sa\/two\); an X\.509-SVID carries exactly one/ })
  const idAndUrl = await certWith([{ type: 'url', value: 'spiffe://cluster.local/ns/a/sa/one' }, { type: 'url', value: 'https://example.com/' }])
  t.throws(() => spiffeIdOf(idAndUrl), { message: /has 2 URI SANs/ }, 'any second URI SAN is refused (X.509-SVID section 2), not only a second SPIFFE ID')
  const https = await certWith([{ type: 'url', value: 'https://example.com/ns/a/sa/b' }])
  t.throws(() => spiffeIdOf(https), { message: /its URI SAN is not a SPIFFE ID: .*must start with "spiffe:\/\/"/ })
  const twoSanExtensions = await certWith([{ type: 'url', value: 'spiffe://cluster.local/ns/a/sa/one' }],
    [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: 'spiffe://cluster.local/ns/a/sa/two' }])])
  t.throws(() => spiffeIdOf(twoSanExtensions), { message: /has 2 subjectAltName extensions/ })
})

t.test('SAN text from node:crypto parses one way only: a value cannot pose as a second name', async (t) => {
  t.same(generalNames('DNS:web.demo.svc, URI:spiffe://cluster.local/ns/demo/sa/web, IP Address:127.0.0.1'), [
    { type: 'DNS', value: 'web.demo.svc' },
    { type: 'URI', value: 'spiffe://cluster.local/ns/demo/sa/web' },
    { type: 'IP Address', value: '127.0.0.1' },
  ])
  t.same(generalNames('URI:"spiffe://a/b, URI:spiffe://c/d"'), [{ type: 'URI', value: 'spiffe://a/b, URI:spiffe://c/d' }], 'a quoted value is one name')
  t.throws(() => generalNames('URI:"unterminated'), /cannot read the subject alternative names/)
  // A certificate whose one URI SAN holds text that reads like a second one: refused, never that second identity.
  const forged = await certWith([{ type: 'url', value: 'spiffe://cluster.local/ns/a/sa/one, URI:spiffe://cluster.local/ns/a/sa/admin' }])
  t.throws(() => spiffeIdOf(forged), { message: /its URI SAN is not a SPIFFE ID/ }, 'the whole value is checked, and fails')
})
