// The SNI of a TLS connection the app opens, read from a real ClientHello; no name or broken bytes give undefined, never a throw.
import t, { type Test } from 'tap'
import net from 'node:net'
import tls from 'node:tls'
import { once } from 'node:events'
import { sniOf } from '../../src/transport/client-hello.ts'

/** The first TLS record a real node client sends to a plain TCP server: its ClientHello. */
async function captureHello (t: Test, options: tls.ConnectionOptions): Promise<Buffer> {
  const server = net.createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.close() })
  const hello = new Promise<Buffer>((resolve) => {
    server.once('connection', (s) => {
      s.on('error', () => {})
      let buf = Buffer.alloc(0)
      s.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c])
        if (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) { s.destroy(); resolve(buf) }
      })
    })
  })
  const client = tls.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, ...options })
  client.on('error', () => {}) // the server hangs up instead of answering
  t.teardown(() => { client.destroy() })
  return hello
}

t.test('a real ClientHello with servername api.example.com: sniOf says so', async (t) => {
  const hello = await captureHello(t, { servername: 'api.example.com' })
  t.equal(hello[0], 0x16, 'a handshake record')
  t.equal(sniOf(hello), 'api.example.com')
  t.equal(sniOf(Buffer.concat([hello, Buffer.from('more bytes after the record')])), 'api.example.com', 'bytes after the hello do not matter')
})

t.test('also with TLS 1.2 only and ALPN offered', async (t) => {
  const hello = await captureHello(t, { servername: 'db.internal', maxVersion: 'TLSv1.2', ALPNProtocols: ['h2', 'http/1.1'] })
  t.equal(sniOf(hello), 'db.internal')
})

t.test('no SNI (connecting to an IP, or servername turned off): undefined', async (t) => {
  t.equal(sniOf(await captureHello(t, {})), undefined, 'host 127.0.0.1 and no servername')
  t.equal(sniOf(await captureHello(t, { servername: '' })), undefined, 'servername ""')
})

t.test('a hello cut anywhere: undefined until the whole name is there, never a throw, never part of a name', async (t) => {
  const hello = await captureHello(t, { servername: 'api.example.com' })
  const nameEnd = hello.indexOf('api.example.com') + 'api.example.com'.length
  t.ok(nameEnd > 'api.example.com'.length, 'the name is in the hello')
  let bad = 0
  for (let n = 0; n <= hello.length; n++) {
    let got: string | undefined
    try {
      got = sniOf(hello.subarray(0, n))
    } catch (err) {
      t.fail(`threw after ${n} bytes: ${String(err)}`)
      continue
    }
    if (got !== (n < nameEnd ? undefined : 'api.example.com')) bad++
  }
  t.equal(bad, 0, `every prefix of the ${hello.length} bytes`)
})

t.test('not a ClientHello: undefined', async (t) => {
  const hello = await captureHello(t, { servername: 'api.example.com' })
  const serverHello = Buffer.from(hello)
  serverHello[5] = 0x02
  const appData = Buffer.from(hello)
  appData[0] = 0x17
  for (const [what, bytes] of [
    ['nothing', Buffer.alloc(0)],
    ['one byte', Buffer.from([0x16])],
    ['HTTP', Buffer.from('GET / HTTP/1.1\r\nhost: api.example.com\r\n\r\n')],
    ['a ServerHello', serverHello],
    ['application data', appData],
    ['zeros', Buffer.alloc(600)],
    ['0x16 then 0xff', Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff, 0x01]), Buffer.alloc(300, 0xff)])],
  ] as Array<[string, Buffer]>) {
    t.equal(sniOf(bytes), undefined, what)
  }
})

t.test('lengths that point past the end: undefined, no throw', async (t) => {
  const hello = await captureHello(t, { servername: 'api.example.com' })
  const at = hello.indexOf('api.example.com')
  const longName = Buffer.from(hello)
  longName.writeUInt16BE(0xffff, at - 2) // the host name's own length
  t.equal(sniOf(longName), undefined, 'a name longer than the extensions')
  const notHostName = Buffer.from(hello)
  notHostName[at - 3] = 1 // name_type other than host_name(0)
  t.equal(sniOf(notHostName), undefined, 'a server name that is not a host name')
  const threw: number[] = []
  for (let i = 0; i < hello.length; i++) {
    const b = Buffer.from(hello)
    b[i] = 0xff
    try { sniOf(b) } catch { threw.push(i) }
  }
  t.same(threw, [], 'any one byte set to 0xff: no throw')
})
