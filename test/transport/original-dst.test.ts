// Where a redirected connection was going: sockaddr bytes → host:port (IPv6 in RFC 5952 text), and the getsockopt lookup on real sockets.
import t from 'tap'
import net from 'node:net'
import { once } from 'node:events'
import { decodeSockaddr, originalDstLookup } from '../../src/transport/original-dst.ts'

/** struct sockaddr_in as getsockopt fills it (family in host order, little-endian here; port big-endian), in a 28-byte buffer. */
function sockaddrIn (ip: string, port: number): Buffer {
  const b = Buffer.alloc(28, 0xee) // junk after the 16 bytes of a sockaddr_in must not matter
  b.writeUInt16LE(2, 0)
  b.writeUInt16BE(port, 2)
  ip.split('.').forEach((o, i) => { b[4 + i] = Number(o) })
  b.fill(0, 8, 16)
  return b
}

/** struct sockaddr_in6 from eight 16-bit groups. */
function sockaddrIn6 (groups: number[], port: number): Buffer {
  const b = Buffer.alloc(28)
  b.writeUInt16LE(10, 0)
  b.writeUInt16BE(port, 2)
  b.writeUInt32BE(0x12345, 4) // flowinfo
  groups.forEach((g, i) => b.writeUInt16BE(g, 8 + i * 2))
  b.writeUInt32LE(3, 24) // scope id
  return b
}

t.test('sockaddr_in: dotted IPv4 and the port', async (t) => {
  t.same(decodeSockaddr(sockaddrIn('10.96.0.10', 80)), { host: '10.96.0.10', port: 80 })
  t.same(decodeSockaddr(sockaddrIn('192.168.255.1', 65535)), { host: '192.168.255.1', port: 65535 })
  t.same(decodeSockaddr(sockaddrIn('0.0.0.0', 5432)), { host: '0.0.0.0', port: 5432 })
})

t.test('sockaddr_in6: RFC 5952 text (lower case, no leading zeros, the first longest zero run as ::)', async (t) => {
  const cases: Array<[number[], string]> = [
    [[0xfd00, 0, 0, 0, 0, 0, 0, 1], 'fd00::1'],
    [[0, 0, 0, 0, 0, 0, 0, 1], '::1'],
    [[0, 0, 0, 0, 0, 0, 0, 0], '::'],
    [[0x2001, 0xdb8, 0, 0, 1, 0, 0, 1], '2001:db8::1:0:0:1'],
    [[0x2001, 0xdb8, 0, 1, 1, 1, 1, 1], '2001:db8:0:1:1:1:1:1'],
    [[0x2001, 0xdb8, 0, 0, 1, 0, 0, 0], '2001:db8:0:0:1::'],
    [[0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0xa], 'fd00:10:96::a'],
    [[0xfe80, 0, 0, 0, 0xabcd, 0xef01, 0x2345, 0x6789], 'fe80::abcd:ef01:2345:6789'],
    [[1, 2, 3, 4, 5, 6, 7, 8], '1:2:3:4:5:6:7:8'],
  ]
  for (const [groups, text] of cases) t.same(decodeSockaddr(sockaddrIn6(groups, 8080)), { host: text, port: 8080 }, text)
})

t.test('sockaddr_in6: the same text a URL host gets, for many addresses', async (t) => {
  let seed = 7
  const next = (): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed }
  const bad: string[] = []
  for (let n = 0; n < 2000; n++) {
    // Mostly zeros, so that runs of every length and position come up.
    const groups = Array.from({ length: 8 }, () => next() % 3 === 0 ? next() & 0xffff : 0)
    const got = decodeSockaddr(sockaddrIn6(groups, 1))?.host
    const want = new URL(`http://[${groups.map((g) => g.toString(16)).join(':')}]/`).hostname.slice(1, -1)
    if (got !== want) bad.push(`${groups.join(',')}: ${got} != ${want}`)
  }
  t.same(bad.slice(0, 5), [], 'as WHATWG URL serialises IPv6 (RFC 5952 compression)')
})

t.test('an address family other than IPv4 or IPv6: undefined', async (t) => {
  for (const family of [0, 1, 3, 17]) {
    const b = sockaddrIn('10.0.0.1', 80)
    b.writeUInt16LE(family, 0)
    t.equal(decodeSockaddr(b), undefined, `family ${family}`)
  }
})

t.test('the lookup on this machine', async (t) => {
  const lookup = originalDstLookup()
  t.equal(originalDstLookup(), lookup, 'loaded once')
  if (process.platform !== 'linux') {
    t.match(lookup, { available: false, why: /only on Linux/ })
    return
  }
  t.equal(lookup.available, true, lookup.available ? 'available on Linux (koffi and libc load)' : lookup.why)
  if (!lookup.available) return
  t.equal(lookup.lookup(new net.Socket()), undefined, 'a socket with no file descriptor: undefined')

  for (const host of ['127.0.0.1', '::1']) {
    const server = net.createServer()
    server.listen(0, host)
    const listening = await Promise.race([once(server, 'listening').then(() => true), once(server, 'error').then(() => false)])
    if (!listening) { t.comment(`cannot listen on ${host}: skipped`); continue }
    t.teardown(() => { server.close() })
    const port = (server.address() as net.AddressInfo).port
    const accepted = once(server, 'connection') as Promise<[net.Socket]>
    const client = net.connect(port, host)
    t.teardown(() => { client.destroy() })
    const [socket] = await accepted
    t.teardown(() => { socket.destroy() })
    const got = lookup.lookup(socket)
    // No NAT touched it: no original destination (or, where conntrack tracks it, the listener itself,
    // which the listener treats as "not redirected").
    t.ok(got === undefined || (got.host === host && got.port === port), `${host}: a plain connection is not redirected (${JSON.stringify(got)})`)
    socket.destroy()
    await once(socket, 'close')
    t.equal(lookup.lookup(socket), undefined, `${host}: a closed socket: undefined, no throw`)
  }
})
