// Upstream failures in the words a caller sees: which `remora-proxy-error` (and status) a refused,
// timed-out, TLS-failed or reset upstream gives, towards a peer sidecar and towards the local app.
import t from 'tap'
import { errors as undiciErrors } from 'undici'
import { ConnectTimeoutError, PeerIdentityMismatch, ProxyErrors } from '../../src/errors.ts'
import { APP_REASONS, classify, PEER_REASONS } from '../../src/http/upstream-errors.ts'

const err = (code: string | undefined, message = `${code ?? 'no code'} failure`): NodeJS.ErrnoException => Object.assign(new Error(message), code === undefined ? {} : { code })

t.test('the two reason sets: towards a peer sidecar, and towards the local app', async (t) => {
  t.equal(PEER_REASONS.refused, ProxyErrors.connectRefused)
  t.equal(PEER_REASONS.reset, ProxyErrors.upstreamReset)
  t.equal(PEER_REASONS.trustMeshHeaders, true, 'a peer sidecar may send remora-proxy-error back')
  t.equal(APP_REASONS.refused, ProxyErrors.appUnavailable)
  t.equal(APP_REASONS.reset, ProxyErrors.appReset)
  t.equal(APP_REASONS.trustMeshHeaders, false, 'an app may not forge mesh headers')
})

t.test('connection refused: the peer sidecar (502) or the local app (503) is not listening', async (t) => {
  const refused = err('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:15006')
  t.equal(classify(refused, PEER_REASONS), ProxyErrors.connectRefused)
  t.equal(classify(refused, PEER_REASONS).status, 502)
  t.equal(classify(refused, APP_REASONS), ProxyErrors.appUnavailable)
  t.equal(classify(refused, APP_REASONS).status, 503)
})

t.test('connect timeouts, from node, remora\'s own connect timer or undici, are connect timeout (504)', async (t) => {
  for (const [name, e] of [
    ['ETIMEDOUT', err('ETIMEDOUT', 'connect ETIMEDOUT 10.0.0.1:15006')],
    ['remora ConnectTimeoutError', new ConnectTimeoutError('10.0.0.1:15006', 1000)],
    ['undici ConnectTimeoutError', new undiciErrors.ConnectTimeoutError()],
  ] as const) {
    t.equal(classify(e, PEER_REASONS), ProxyErrors.connectTimeout, `${name} towards a peer`)
    t.equal(classify(e, APP_REASONS), ProxyErrors.connectTimeout, `${name} towards the app`)
  }
  t.equal(ProxyErrors.connectTimeout.status, 504)
})

t.test('a peer presenting another workload\'s certificate is peer identity mismatch', async (t) => {
  const e = new PeerIdentityMismatch('spiffe://cluster.local/ns/demo/sa/web', 'spiffe://cluster.local/ns/demo/sa/api')
  t.equal(classify(e, PEER_REASONS), ProxyErrors.peerIdentityMismatch)
  t.equal(classify(e, APP_REASONS), ProxyErrors.peerIdentityMismatch, 'whichever side it came from')
  t.equal(classify(err('REMORA_PEER_IDENTITY'), PEER_REASONS), ProxyErrors.peerIdentityMismatch, 'known by its code')
})

t.test('every other TLS handshake failure is peer tls failed', async (t) => {
  for (const code of [
    'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN',
    'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA', 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED', 'ERR_SSL_WRONG_VERSION_NUMBER',
    'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL', 'ERR_SSL_PACKET_LENGTH_TOO_LONG', 'ERR_TLS_CERT_ALTNAME_INVALID',
  ]) {
    t.equal(classify(err(code), PEER_REASONS), ProxyErrors.peerTlsFailed, code)
  }
  t.equal(ProxyErrors.peerTlsFailed.status, 502)
})

t.test('anything else is a reset: the upstream went away before answering', async (t) => {
  for (const e of [err('ECONNRESET', 'read ECONNRESET'), err('EPIPE'), err('ERR_HTTP2_STREAM_ERROR'), err('ERR_HTTP2_GOAWAY_SESSION'), err(undefined, 'socket hang up')]) {
    t.equal(classify(e, PEER_REASONS), ProxyErrors.upstreamReset, `${e.code ?? e.message} towards a peer`)
    t.equal(classify(e, APP_REASONS), ProxyErrors.appReset, `${e.code ?? e.message} towards the app`)
  }
  t.equal(classify(undefined, PEER_REASONS), ProxyErrors.upstreamReset, 'no error at all (a bare RST_STREAM)')
  t.equal(classify(undefined, APP_REASONS), ProxyErrors.appReset)
})

t.test('TLS is recognised before the socket code: a TLS error is never reported as refused or reset', async (t) => {
  t.equal(classify(err('ECONNRESET', 'error:0A000418:SSL routines::tlsv1 alert unknown ca ERR_SSL_TLSV1_ALERT_UNKNOWN_CA'), PEER_REASONS), ProxyErrors.peerTlsFailed)
})

t.test('every reason a caller gets is one of the catalog, with a gRPC status a gRPC client can act on', async (t) => {
  const catalog = new Set(Object.values(ProxyErrors))
  for (const code of ['ECONNREFUSED', 'ETIMEDOUT', 'UND_ERR_CONNECT_TIMEOUT', 'REMORA_PEER_IDENTITY', 'CERT_HAS_EXPIRED', 'ECONNRESET']) {
    for (const reasons of [PEER_REASONS, APP_REASONS]) {
      const r = classify(err(code), reasons)
      t.ok(catalog.has(r), `${code}: ${r.reason}`)
      t.equal(r.grpcStatus, 14, `${code}: UNAVAILABLE, which gRPC clients may retry`)
    }
  }
})
