// Protocol detection on a connection's first bytes: which server gets the connection (TLS for mTLS
// from peers, HTTP/2, HTTP/1.x, remora's opaque-TCP header), when to wait for more bytes, a silent
// client (timeout), and that no byte is lost on the way.
import t from 'tap'
import { PassThrough } from 'node:stream'
import type { Socket } from 'node:net'
import { classifyBytes, detect, type Detected } from '../../src/transport/detect.ts'
import { encodeTcpHeader } from '../../src/transport/tcp-header.ts'

const PREFACE = 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'
const bytes = (s: string): Buffer => Buffer.from(s, 'latin1')

t.test('nothing yet: wait', async (t) => {
  t.equal(classifyBytes(Buffer.alloc(0)), undefined)
})

t.test('a TLS record (ClientHello) is known from its first byte', async (t) => {
  t.equal(classifyBytes(Buffer.from([0x16])), 'tls', 'one byte is enough')
  // Handshake record, TLS 1.0 record version (what ClientHellos carry), length, ClientHello type.
  t.equal(classifyBytes(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03])), 'tls')
  t.equal(classifyBytes(Buffer.from([0x17, 0x03, 0x03, 0x00, 0x10])), 'unknown', 'application data without a handshake is not a ClientHello')
  t.equal(classifyBytes(Buffer.from([0x80, 0x2e, 0x01, 0x03, 0x01])), 'unknown', 'an SSLv2-style hello is not TLS the sidecar speaks')
})

t.test('the HTTP/2 preface: only the whole 24 bytes say h2', async (t) => {
  t.equal(classifyBytes(bytes(PREFACE)), 'h2')
  t.equal(classifyBytes(Buffer.concat([bytes(PREFACE), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])])), 'h2', 'the preface followed by a SETTINGS frame')
  for (const n of [1, 3, 4, 11, 16, 18, 20, PREFACE.length - 1]) {
    t.equal(classifyBytes(bytes(PREFACE.slice(0, n))), undefined, `a preface cut after ${n} bytes waits for the rest`)
  }
})

t.test('a preface that goes wrong is not h2, nor an HTTP/1.1 request line: it is closed', async (t) => {
  // PRI is reserved for the HTTP/2 preface (RFC 9113 §3.4): anything else starting with it is a broken preface.
  t.equal(classifyBytes(bytes('PRI * HTTP/1.1\r\n\r\n')), 'h2-invalid')
  t.equal(classifyBytes(bytes('PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n')), 'h2-invalid')
  t.equal(classifyBytes(bytes('\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')), 'h2-invalid', 'after an empty line it is no preface either')
  t.equal(classifyBytes(bytes('PRX')), undefined, 'upper-case letters only: may still become a method')
})

t.test('HTTP/1.x request lines: any upper-case method of 3 to 10 letters and a space', async (t) => {
  for (const line of [
    'GET / HTTP/1.1\r\n', 'HEAD /x HTTP/1.0\r\n', 'POST /p HTTP/1.1\r\n', 'PUT /p HTTP/1.1\r\n',
    'DELETE /p HTTP/1.1\r\n', 'OPTIONS * HTTP/1.1\r\n', 'PATCH /p HTTP/1.1\r\n', 'TRACE / HTTP/1.1\r\n',
    'CONNECT web:80 HTTP/1.1\r\n', 'PROPFIND /d HTTP/1.1\r\n', 'MKCALENDAR /c HTTP/1.1\r\n',
  ]) {
    t.equal(classifyBytes(bytes(line)), 'http1', JSON.stringify(line))
  }
  t.equal(classifyBytes(bytes('GET ')), 'http1', 'the method and its space are enough')
  t.equal(classifyBytes(bytes('GET /')), 'http1')
})

t.test('the start of a method: wait for more', async (t) => {
  for (const s of ['G', 'GE', 'GET', 'P', 'PO', 'POS', 'POST', 'OPTIONS', 'MKCALENDAR']) {
    t.equal(classifyBytes(bytes(s)), undefined, JSON.stringify(s))
  }
})

t.test('lower-case methods are not HTTP (methods are case-sensitive): closed at once', async (t) => {
  t.equal(classifyBytes(bytes('get / HTTP/1.1\r\n')), 'unknown')
  t.equal(classifyBytes(bytes('Get / HTTP/1.1\r\n')), 'unknown')
  t.equal(classifyBytes(bytes('g')), 'unknown', 'known from the first lower-case byte, no waiting')
})

t.test('the remora-tcp header: its four magic bytes say so; the start of them waits; a zero byte then anything else is unknown', async (t) => {
  t.equal(classifyBytes(Buffer.from([0x00, 0x52, 0x4d, 0x54])), 'remora-tcp', '\\0RMT')
  t.equal(classifyBytes(encodeTcpHeader({ port: 5432 })), 'remora-tcp', 'a whole header')
  t.equal(classifyBytes(Buffer.concat([encodeTcpHeader({ port: 5432 }), Buffer.from('app bytes')])), 'remora-tcp', 'and what follows it')
  for (const n of [1, 2, 3]) t.equal(classifyBytes(encodeTcpHeader({ port: 80 }).subarray(0, n)), undefined, `the magic cut after ${n} bytes waits for the rest`)
  t.equal(classifyBytes(Buffer.from([0x00, 0x00])), 'unknown', 'a zero byte then not R')
  t.equal(classifyBytes(Buffer.from([0x00, 0x52, 0x4d, 0x55])), 'unknown', 'the last magic byte wrong')
  t.equal(classifyBytes(Buffer.from([0x00, 0x52, 0x00])), 'unknown', 'known as soon as a byte differs, without waiting for four')
})

t.test('garbage and server-first protocols are unknown', async (t) => {
  t.equal(classifyBytes(Buffer.from([0x00, 0x01])), 'unknown', 'a zero byte that does not start the remora-tcp magic')
  t.equal(classifyBytes(Buffer.from([0xff, 0xfe, 0xfd])), 'unknown')
  t.equal(classifyBytes(bytes('SSH-2.0-OpenSSH_9.6\r\n')), 'unknown', 'SSH: no space after the letters')
  t.equal(classifyBytes(bytes('GET/ HTTP/1.1')), 'unknown', 'no space after the method')
  t.equal(classifyBytes(bytes(' GET / HTTP/1.1')), 'unknown', 'a leading space')
  t.equal(classifyBytes(bytes('GE T / HTTP/1.1')), 'unknown', 'two letters are no method')
  t.equal(classifyBytes(bytes('ABCDEFGHIJKLMNOPQRSTU / HTTP/1.1')), 'unknown', 'twenty-one letters are more than any method')
  t.equal(classifyBytes(bytes('ABCDEFGHIJKLMNOPQRSTU')), 'unknown', '21 upper-case letters and no space: no more waiting')
  t.equal(classifyBytes(bytes('ABCDEFGHIJKLMNOPQRST')), undefined, '20 upper-case letters may still be a method')
})

t.test('methods node\'s HTTP/1.1 server accepts are detected as HTTP/1.x (UNSUBSCRIBE has 11 letters, M-SEARCH a hyphen)', async (t) => {
  t.equal(classifyBytes(bytes('UNSUBSCRIBE /events HTTP/1.1\r\n')), 'http1')
  t.equal(classifyBytes(bytes('M-SEARCH * HTTP/1.1\r\n')), 'http1')
})

t.test('an empty line before the request line is tolerated, as node\'s parser does (RFC 9112 §2.2)', async (t) => {
  t.equal(classifyBytes(bytes('\r\nGET / HTTP/1.1\r\n')), 'http1')
  t.equal(classifyBytes(bytes('\r\n')), undefined, 'an empty line alone: wait for the request line')
})

/** A stand-in for an accepted socket: detect() only listens, pauses and puts bytes back. */
function fakeSocket (): PassThrough & Socket {
  return new PassThrough() as PassThrough & Socket
}

function detected (socket: Socket, timeoutMs = 10_000): Promise<Detected> {
  return new Promise((resolve) => detect(socket, timeoutMs, resolve))
}

async function readAll (socket: PassThrough): Promise<Buffer> {
  socket.end()
  const chunks: Buffer[] = []
  for await (const c of socket) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

t.test('detect: a preface split over chunks is h2, and the server still reads every byte', async (t) => {
  const s = fakeSocket()
  const kind = detected(s)
  let done = false
  void kind.then(() => { done = true })
  s.write(bytes(PREFACE.slice(0, 5)))
  await new Promise((resolve) => setImmediate(resolve))
  s.write(bytes(PREFACE.slice(5, 20)))
  await new Promise((resolve) => setImmediate(resolve))
  t.notOk(done, 'still waiting after 20 of 24 bytes')
  s.write(Buffer.concat([bytes(PREFACE.slice(20)), bytes('frames')]))
  t.equal(await kind, 'h2')
  t.equal((await readAll(s)).toString('latin1'), `${PREFACE}frames`, 'the bytes read for detection are put back, in order')
})

t.test('detect: an HTTP/1.1 request is handed over whole', async (t) => {
  const s = fakeSocket()
  const kind = detected(s)
  s.write(bytes('GE'))
  s.write(bytes('T /path HTTP/1.1\r\nhost: web\r\n\r\n'))
  t.equal(await kind, 'http1')
  t.equal((await readAll(s)).toString('latin1'), 'GET /path HTTP/1.1\r\nhost: web\r\n\r\n')
})

t.test('detect: a TLS ClientHello is handed over from its first byte', async (t) => {
  const s = fakeSocket()
  const kind = detected(s)
  const hello = Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00])
  s.write(hello)
  t.equal(await kind, 'tls')
  t.same(await readAll(s), hello)
})

t.test('detect: a client that ends before saying anything recognisable is unknown', async (t) => {
  const s = fakeSocket()
  const kind = detected(s)
  s.end(bytes('GE'))
  t.equal(await kind, 'unknown', 'two bytes, then end')
  const silent = fakeSocket()
  const k2 = detected(silent)
  silent.end()
  t.equal(await k2, 'unknown', 'no bytes at all')
})

/** What detect() hands over: the kind and the bytes it read. */
function detectedWithHead (socket: Socket, timeoutMs = 10_000): Promise<[Detected, Buffer]> {
  return new Promise((resolve) => detect(socket, timeoutMs, (kind, head) => resolve([kind, head])))
}

t.test('detect: a client that says nothing within the timeout is timeout (a server-speaks-first protocol?), with no head bytes', async (t) => {
  const s = fakeSocket()
  const [kind, head] = await detectedWithHead(s, 20)
  t.equal(kind, 'timeout')
  t.equal(head.length, 0)
  t.equal(s.listenerCount('data'), 0, 'detection stops listening')
  t.equal(s.listenerCount('end'), 0)
  s.end('late bytes')
  t.equal((await readAll(s)).toString('latin1'), 'late bytes', 'bytes sent after the timeout still reach whoever reads next')
})

t.test('detect: some bytes but no verdict within the timeout is unknown, not timeout; the bytes are handed over', async (t) => {
  const s = fakeSocket()
  const result = detectedWithHead(s, 20)
  s.write(bytes('GE'))
  const [kind, head] = await result
  t.equal(kind, 'unknown')
  t.equal(head.toString('latin1'), 'GE')
  t.equal((await readAll(s)).toString('latin1'), 'GE')
})

t.test('detect: the callback gets the head bytes it decided on (a ClientHello, for its SNI)', async (t) => {
  const s = fakeSocket()
  const result = detectedWithHead(s)
  const hello = Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00])
  s.write(hello.subarray(0, 3))
  s.write(hello.subarray(3))
  const [kind, head] = await result
  t.equal(kind, 'tls')
  t.ok(head.length > 0 && head.equals(hello.subarray(0, head.length)), 'the bytes read until the verdict, from the first')
  t.same(await readAll(s), hello, 'and every byte is still there for the reader')
})

t.test('detect: a remora-tcp header split over chunks is remora-tcp, handed over whole', async (t) => {
  const s = fakeSocket()
  const result = detectedWithHead(s)
  const all = Buffer.concat([encodeTcpHeader({ port: 5432 }), Buffer.from('app')])
  s.write(all.subarray(0, 1))
  await new Promise((resolve) => setImmediate(resolve))
  s.write(all.subarray(1, 3))
  await new Promise((resolve) => setImmediate(resolve))
  s.write(all.subarray(3))
  const [kind, head] = await result
  t.equal(kind, 'remora-tcp')
  t.same(head, all, 'every byte read so far')
  t.same(await readAll(s), all)
})

t.test('detect: the timeout does not fire after a verdict', async (t) => {
  const s = fakeSocket()
  const kinds: Detected[] = []
  const first = new Promise<void>((resolve) => detect(s, 20, (k) => { kinds.push(k); resolve() }))
  s.write(bytes('GET / HTTP/1.1\r\n'))
  await first
  // Wait past the timeout on an event: a second detection with the same timeout, started later, times out later.
  t.equal(await detected(fakeSocket(), 40), 'timeout')
  t.same(kinds, ['http1'])
})

t.test('detect: the callback runs once, even when bytes keep arriving', async (t) => {
  const s = fakeSocket()
  const kinds: Detected[] = []
  detect(s, 10_000, (k) => kinds.push(k))
  s.write(bytes('GET / HTTP/1.1\r\n'))
  await new Promise((resolve) => setImmediate(resolve))
  s.write(bytes('host: web\r\n\r\n'))
  s.end()
  await new Promise((resolve) => setImmediate(resolve))
  t.same(kinds, ['http1'])
})
