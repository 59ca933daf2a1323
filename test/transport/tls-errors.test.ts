// TLS failures in words a user can act on: the `reason` label of remora_tls_handshake_failures_total
// for each error node/OpenSSL reports (codes as node 24 reports them on either end of a handshake).
import t from 'tap'
import { PeerIdentityMismatch } from '../../src/errors.ts'
import { TLS_REASONS, tlsReason, type TlsReason } from '../../src/transport/tls-errors.ts'

const cases: ReadonlyArray<[string, TlsReason]> = [
  // The peer presented a valid mesh certificate of another workload.
  ['REMORA_PEER_IDENTITY', 'identity-mismatch'],
  // Expired: our check of the peer's certificate, or the peer's alert about ours.
  ['CERT_HAS_EXPIRED', 'expired'],
  ['ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED', 'expired'],
  ['CERT_NOT_YET_VALID', 'not-yet-valid'],
  // Not signed by a trusted CA: verification codes, and the peer's alerts about ours.
  ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'untrusted'],
  ['DEPTH_ZERO_SELF_SIGNED_CERT', 'untrusted'],
  ['SELF_SIGNED_CERT_IN_CHAIN', 'untrusted'],
  ['UNABLE_TO_GET_ISSUER_CERT', 'untrusted'],
  ['UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'untrusted'],
  ['CERT_SIGNATURE_FAILURE', 'untrusted'],
  ['CERT_UNTRUSTED', 'untrusted'],
  ['ERR_SSL_TLSV1_ALERT_UNKNOWN_CA', 'untrusted'],
  ['ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE', 'untrusted'],
  ['ERR_SSL_CERTIFICATE_VERIFY_FAILED', 'untrusted'],
  // mTLS without a client certificate: the server's view, then the client's (TLS 1.3 alert 116).
  ['ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE', 'no-client-certificate'],
  ['ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED', 'no-client-certificate'],
  // No TLS version in common (the sidecar speaks TLS 1.3 only): server's view, client's view.
  ['ERR_SSL_UNSUPPORTED_PROTOCOL', 'protocol-version'],
  ['ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION', 'protocol-version'],
  ['ERR_SSL_NO_PROTOCOLS_AVAILABLE', 'protocol-version'],
  ['ERR_SSL_WRONG_VERSION_NUMBER', 'protocol-version'],
  // No ALPN protocol in common (the sidecar offers h2 only): server's view, client's view.
  ['ERR_SSL_NO_APPLICATION_PROTOCOL', 'no-alpn'],
  ['ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL', 'no-alpn'],
  // Any other TLS error of node or OpenSSL.
  ['ERR_SSL_PACKET_LENGTH_TOO_LONG', 'other'],
  ['ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE', 'other'],
  ['ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN', 'other'],
  ['ERR_TLS_CERT_ALTNAME_INVALID', 'other'],
  ['ERR_TLS_HANDSHAKE_TIMEOUT', 'other'],
]

t.test('each node/OpenSSL error code has its reason', async (t) => {
  for (const [code, reason] of cases) t.equal(tlsReason({ code }), reason, code)
})

t.test('the reasons are the metric\'s label values, each reachable from some code but plaintext', async (t) => {
  const reached = new Set(cases.map(([, r]) => r))
  for (const r of reached) t.ok(TLS_REASONS.includes(r), r)
  // `plaintext` is counted where the inbound listener meets a plaintext caller, not from an error.
  t.same(TLS_REASONS.filter((r) => !reached.has(r)), ['plaintext'])
})

t.test('errors that are not about TLS have no reason: refused, reset, timed out', async (t) => {
  for (const code of ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'UND_ERR_CONNECT_TIMEOUT', 'ERR_HTTP2_STREAM_ERROR', 'ERR_HTTP2_GOAWAY_SESSION']) {
    t.equal(tlsReason({ code, message: `connect ${code} 10.0.0.1:15006` }), undefined, code)
  }
  t.equal(tlsReason({ message: 'socket hang up' }), undefined, 'a message alone, about no TLS error')
  t.equal(tlsReason({}), undefined, 'no code, no message')
  t.equal(tlsReason({ code: '' }), undefined)
})

t.test('no error: no reason', async (t) => {
  t.equal(tlsReason(undefined), undefined)
})

t.test('real error objects', async (t) => {
  const mismatch = new PeerIdentityMismatch('spiffe://cluster.local/ns/demo/sa/web', 'spiffe://cluster.local/ns/demo/sa/api')
  t.equal(tlsReason(mismatch), 'identity-mismatch')
  // As node reports them: a lower-case OpenSSL message next to the code.
  const required = Object.assign(new Error('C08C88E4477F0000:error:0A00045C:SSL routines:ssl3_read_bytes:tlsv13 alert certificate required:../deps/openssl/openssl/ssl/record/rec_layer_s3.c:916:SSL alert number 116\n'), { code: 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED' })
  t.equal(tlsReason(required), 'no-client-certificate')
  const selfSigned = Object.assign(new Error('self-signed certificate; if the root CA is installed locally, try running Node.js with --use-system-ca'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' })
  t.equal(tlsReason(selfSigned), 'untrusted')
})

t.test('a code carried in the message counts too (a verify error passed on as text)', async (t) => {
  t.equal(tlsReason({ message: 'CERT_HAS_EXPIRED' }), 'expired')
  t.equal(tlsReason({ code: 'ECONNRESET', message: 'peer said UNKNOWN_CA' }), 'untrusted', 'the TLS cause wins over the socket code')
  t.equal(tlsReason({ message: 'ERR_SSL_SOMETHING_NEW' }), undefined, 'but only named causes: "other" needs an ERR_SSL_/ERR_TLS_ code')
})

t.test('the more actionable cause wins when several match: expiry before trust', async (t) => {
  t.equal(tlsReason({ code: 'ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED', message: 'BAD_CERTIFICATE' }), 'expired')
})
