// Header rules at each hop: what the next hop receives of a request's or response's headers (no
// hop-by-hop headers, no forged mesh headers from outside), gRPC recognition, and bodyless answers.
import t from 'tap'
import { bodyless, first, forwardable, isGrpc, MeshHeader, PER_REQUEST_HEADERS } from '../../src/http/headers.ts'

t.test('forwardable drops the hop-by-hop headers of RFC 9110 §7.6.1 and keeps end-to-end ones', async (t) => {
  const out = forwardable({
    connection: 'keep-alive',
    'keep-alive': 'timeout=5',
    'proxy-connection': 'keep-alive',
    'transfer-encoding': 'chunked',
    upgrade: 'websocket',
    'http2-settings': 'AAMAAABkAAQAoAAAAAIAAAAA',
    'proxy-authorization': 'Basic dXNlcjpwYXNz',
    host: 'web:80',
    expect: '100-continue',
    te: 'gzip',
    'content-type': 'text/plain',
    'content-length': '5',
    authorization: 'Bearer abc',
    'x-request-id': 'r1',
    cookie: 'a=1',
  }, true)
  t.same(out, { 'content-type': 'text/plain', 'content-length': '5', authorization: 'Bearer abc', 'x-request-id': 'r1', cookie: 'a=1' })
  t.notOk('host' in out, 'the host travels as :authority, not as a header')
  t.notOk('expect' in out, 'the sidecar answers 100-continue itself')
  t.ok('authorization' in out, 'end-to-end credentials are the app\'s business and pass')
})

t.test('forwardable drops every header the Connection header names, in any case and spacing', async (t) => {
  const out = forwardable({ connection: 'close, X-Hop ,x-debug-token', 'x-hop': '1', 'x-debug-token': 'secret', 'x-stay': 'yes' }, true)
  t.same(out, { 'x-stay': 'yes' })
  const named = forwardable({ connection: 'Content-MD5', 'content-md5': 'abc', accept: '*/*' }, false)
  t.same(named, { accept: '*/*' }, 'even an end-to-end header, once the sender made it hop-by-hop')
  t.same(forwardable({ 'x-hop': '1' }, true), { 'x-hop': '1' }, 'without a Connection header nothing else is dropped')
})

t.test('forwardable keeps te: trailers (gRPC needs it over HTTP/2) and drops other te values', async (t) => {
  t.same(forwardable({ te: 'trailers' }, true), { te: 'trailers' })
  t.same(forwardable({ te: 'Trailers' }, true), { te: 'trailers' }, 'the value is case-insensitive')
  t.same(forwardable({ te: 'trailers, deflate;q=0.5' }, true), { te: 'trailers' }, 'only trailers survives of a list')
  t.same(forwardable({ te: 'gzip, deflate' }, true), {}, 'transfer codings are per hop')
  t.same(forwardable({ connection: 'TE', te: 'trailers' }, true), { te: 'trailers' }, 'HTTP/1.1 names TE in Connection: trailers still pass')
})

t.test('mesh headers from outside the mesh are dropped; from a peer sidecar they pass', async (t) => {
  const mesh = Object.values(MeshHeader)
  t.same(mesh.sort(), ['remora-attempt', 'remora-client-id', 'remora-orig-proto', 'remora-proxy-error', 'remora-target-port', 'remora-upgrade', 'remora-upgrade-status'])
  const incoming = Object.fromEntries([...mesh.map((h) => [h, 'forged']), ['x-app', 'kept']])
  t.same(forwardable(incoming, true), { 'x-app': 'kept' }, 'an app or outside caller cannot forge a client id, target port or proxy error')
  t.same(forwardable({ 'Remora-Client-Id': 'spiffe://evil', 'REMORA-PROXY-ERROR': 'x' }, true), {}, 'in any letter case')
  t.same(forwardable(incoming, false), incoming, 'a peer sidecar\'s mesh headers are trusted')
  t.same(forwardable({ 'remora-other': '1' }, true), { 'remora-other': '1' }, 'only the mesh\'s own names are dropped, not the whole prefix')
})

t.test('forwardable drops pseudo-headers: the next hop makes its own', async (t) => {
  const out = forwardable({ ':method': 'GET', ':path': '/x', ':authority': 'web', ':scheme': 'http', ':status': '200', accept: 'text/html' }, true)
  t.same(out, { accept: 'text/html' })
})

t.test('forwardable lower-cases names, keeps lists, stringifies numbers and skips undefined', async (t) => {
  const out = forwardable({ 'Content-Type': 'application/json', 'Set-Cookie': ['a=1', 'b=2'], 'Content-Length': 12, 'x-none': undefined }, false)
  t.same(out, { 'content-type': 'application/json', 'set-cookie': ['a=1', 'b=2'], 'content-length': '12' })
  t.notOk('x-none' in out)
  const incoming = { accept: '*/*' }
  forwardable(incoming, true).accept = 'changed'
  t.equal(incoming.accept, '*/*', 'a copy: the caller\'s headers are untouched')
})

t.test('span ids are the per-request headers kept out of HPACK\'s table', async (t) => {
  t.same([...PER_REQUEST_HEADERS], ['traceparent', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-parentspanid'])
  t.ok(Object.isFrozen(PER_REQUEST_HEADERS))
  t.same(forwardable({ traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', tracestate: 'a=b' }, true),
    { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', tracestate: 'a=b' }, 'trace context is forwarded')
})

t.test('isGrpc: content-type application/grpc and its +format variants', async (t) => {
  t.ok(isGrpc({ 'content-type': 'application/grpc' }))
  t.ok(isGrpc({ 'content-type': 'application/grpc+proto' }))
  t.ok(isGrpc({ 'content-type': 'application/grpc+json' }))
  t.ok(isGrpc({ 'content-type': ['application/grpc', 'text/plain'] }), 'the first of several')
  t.notOk(isGrpc({ 'content-type': 'application/json' }))
  t.notOk(isGrpc({ 'content-type': 'text/plain; x=application/grpc' }))
  t.notOk(isGrpc({}), 'no content-type')
  t.notOk(isGrpc({ 'content-type': [] }), 'an empty list')
})

t.test('first: the first value of a header, as a string', async (t) => {
  t.equal(first(undefined), undefined)
  t.equal(first('a'), 'a')
  t.equal(first(['a', 'b']), 'a')
  t.equal(first([]), undefined)
  t.equal(first(42), '42')
  t.equal(first(''), '', 'an empty value is a value')
})

t.test('bodyless: HEAD, 1xx, 204 and 304 never carry a body', async (t) => {
  t.ok(bodyless('HEAD', 200))
  t.ok(bodyless('HEAD', 404), 'HEAD, whatever the status')
  t.ok(bodyless('GET', 204))
  t.ok(bodyless('POST', 304))
  t.ok(bodyless('GET', 100))
  t.ok(bodyless('GET', 103))
  t.ok(bodyless('GET', 199))
  t.notOk(bodyless('GET', 200))
  t.notOk(bodyless('POST', 201))
  t.notOk(bodyless('GET', 205), '205: its framing headers, not this rule, say there is no body')
  t.notOk(bodyless('GET', 404))
  t.notOk(bodyless('DELETE', 500))
  t.notOk(bodyless('GET', 99))
})
