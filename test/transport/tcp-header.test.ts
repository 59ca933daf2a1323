// The opaque-TCP transport header: what one sidecar writes the other reads back, the app's bytes after it kept; anything else is an Error, never a hang.
import t from 'tap'
import net from 'node:net'
import { once } from 'node:events'
import { PassThrough } from 'node:stream'
import { TCP_MAGIC, encodeTcpHeader, readTcpHeader, type TcpHeader } from '../../src/transport/tcp-header.ts'

const header = (socket: PassThrough | net.Socket): Promise<TcpHeader | Error> => new Promise((resolve) => readTcpHeader(socket, resolve))

/** Everything the stream still yields once its writer has ended. */
async function rest (s: PassThrough | net.Socket): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of s) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString('latin1')
}

/** A header claiming `n` body bytes, followed by `body`. */
const raw = (n: number, body: string, magic: Buffer = TCP_MAGIC): Buffer => {
  const len = Buffer.alloc(2)
  len.writeUInt16BE(n)
  return Buffer.concat([magic, len, Buffer.from(body, 'latin1')])
}

t.test('encode: the magic, a big-endian length, then JSON naming the port', async (t) => {
  const b = encodeTcpHeader({ port: 5432 })
  t.same(b.subarray(0, 4), Buffer.from([0x00, 0x52, 0x4d, 0x54]), '\\0RMT')
  t.equal(b.readUInt16BE(4), b.length - 6)
  t.same(JSON.parse(b.subarray(6).toString()), { v: 1, port: 5432 })
})

t.test('over a real socket pair: the header, then the app\'s bytes in the same write, untouched', async (t) => {
  const server = net.createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.close() })
  const accepted = once(server, 'connection') as Promise<[net.Socket]>
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
  t.teardown(() => { client.destroy() })
  const [socket] = await accepted
  t.teardown(() => { socket.destroy() })
  const got = header(socket)
  // A server-first protocol's reply would come the other way; here the client's first bytes ride along.
  client.end(Buffer.concat([encodeTcpHeader({ port: 3306 }), Buffer.from('\x00\x01SELECT 1;', 'latin1')]))
  t.same(await got, { port: 3306 })
  t.equal(await rest(socket), '\x00\x01SELECT 1;', 'the bytes after the header reach whoever reads next, in order')
})

t.test('split across chunks byte by byte: still read, nothing after it lost', async (t) => {
  const s = new PassThrough()
  const got = header(s)
  let settled = false
  void got.then(() => { settled = true })
  const all = Buffer.concat([encodeTcpHeader({ port: 8080 }), Buffer.from('hello')])
  const headerLength = all.length - 5
  for (let i = 0; i < headerLength; i++) {
    s.write(all.subarray(i, i + 1))
    await new Promise((resolve) => setImmediate(resolve))
    if (i < headerLength - 1) t.notOk(settled, `still waiting after ${i + 1} of ${headerLength} header bytes`, { diagnostic: false })
  }
  t.same(await got, { port: 8080 })
  for (const c of all.subarray(headerLength)) s.write(Buffer.from([c]))
  s.end()
  t.equal(await rest(s), 'hello')
})

t.test('the header alone (nothing after it yet): read, and the stream is left paused for the next reader', async (t) => {
  const s = new PassThrough()
  const got = header(s)
  s.write(encodeTcpHeader({ port: 1 }))
  t.same(await got, { port: 1 })
  t.ok(s.isPaused())
  t.equal(s.listenerCount('data'), 0, 'the reader no longer listens')
  s.end('later')
  t.equal(await rest(s), 'later')
})

t.test('not a header: an Error saying why, at once', async (t) => {
  const cases: Array<[string, Buffer, RegExp]> = [
    ['bad magic', Buffer.from('GET / HTTP/1.1\r\n'), /bad magic/],
    ['magic of another version', raw(13, '{"port":8080}', Buffer.from([0x00, 0x52, 0x4d, 0x55])), /bad magic/],
    ['too big', raw(4097, ''), /4097 bytes is too big/],
    ['not JSON', raw(5, 'port='), /not JSON/],
    ['JSON null', raw(4, 'null'), /no valid port/],
    ['no port', raw(7, '{"v":1}'), /no valid port/],
    ['port 0', raw(10, '{"port":0}'), /no valid port/],
    ['port 65536', raw(14, '{"port":65536}'), /no valid port/],
    ['port as text', raw(15, '{"port":"8080"}'), /no valid port/],
    ['port not whole', raw(13, '{"port":80.5}'), /no valid port/],
  ]
  for (const [name, bytes, why] of cases) {
    const s = new PassThrough()
    const got = header(s)
    s.write(bytes) // the stream stays open: the answer must not wait for an end
    const r = await got
    t.type(r, Error, name)
    t.match((r as Error).message, why, name)
    s.destroy()
  }
})

t.test('the connection ends before the header is whole: an Error', async (t) => {
  for (const part of [Buffer.alloc(0), TCP_MAGIC.subarray(0, 2), encodeTcpHeader({ port: 8080 }).subarray(0, 10)]) {
    const s = new PassThrough()
    const got = header(s)
    s.end(part)
    const r = await got
    t.type(r, Error, `${part.length} bytes then end`)
    t.match((r as Error).message, /ended before the remora-tcp header/)
  }
})

t.test('the callback runs once, even if more bytes or the end follow', async (t) => {
  const s = new PassThrough()
  const seen: Array<TcpHeader | Error> = []
  readTcpHeader(s, (r) => seen.push(r))
  s.write(Buffer.from('XXXXXX'))
  s.write(encodeTcpHeader({ port: 80 }))
  s.end()
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(seen.length, 1)
  t.type(seen[0], Error)
})
