// Bench opaque-TCP app (run as a child): `node bench/tcp-app.ts <bulkPort> <greetPort>`.
// - bulk port: the client's first line asks for a transfer. `down <n>\n`: the app sends n bytes as fast
//   as the connection takes them, then ends. `up <n>\n`: the app counts n bytes, answers `ok\n`, ends.
// - greet port: a server-speaks-first app (as MySQL): a greeting on accept, then it waits for the
//   client to close.
import net, { type Socket } from 'node:net'

/** What the app writes at a time (a typical app write; node reads up to 64 KiB per read). */
export const CHUNK_BYTES = 64 * 1024
/** About a MySQL handshake packet's length. */
export const GREETING = Buffer.from('J\0\0\0\n8.4.0-remora-bench\0\x01\0\0\0abcdefgh\0\xff\xf7\x08\x02\0\xff\xdf\x15\0\0\0\0\0\0\0\0\0\0ijklmnopqrst\0caching_sha2_password\0', 'latin1')

const CHUNK = Buffer.alloc(CHUNK_BYTES, 0x61)

/** Writes `n` bytes of CHUNK-sized writes with backpressure, then `then()`. */
export function sendBytes (s: Socket, n: number, then: () => void): void {
  let left = n
  const pump = (): void => {
    while (left > 0) {
      const c = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left)
      left -= c.length
      if (!s.write(c)) { s.once('drain', pump); return }
    }
    then()
  }
  pump()
}

function bulk (s: Socket): void {
  let head = Buffer.alloc(0)
  const onHead = (d: Buffer): void => {
    head = Buffer.concat([head, d])
    const nl = head.indexOf(10)
    if (nl < 0) { if (head.length > 100) s.destroy(); return }
    s.off('data', onHead)
    const m = /^(down|up) (\d+)$/.exec(head.subarray(0, nl).toString('latin1'))
    if (m === null) { s.destroy(); return }
    const n = Number(m[2])
    if (m[1] === 'down') { sendBytes(s, n, () => s.end()); return }
    let got = head.length - nl - 1
    const check = (): void => { if (got >= n) { s.off('data', count); s.end('ok\n') } }
    const count = (c: Buffer): void => { got += c.length; check() }
    s.on('data', count)
    check()
  }
  s.on('data', onHead)
}

function greet (s: Socket): void {
  s.write(GREETING)
  s.resume()
  s.on('end', () => s.end())
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  const [bulkPort, greetPort] = process.argv.slice(2).map(Number)
  const serve = (port: number, handle: (s: Socket) => void): void => {
    net.createServer({ noDelay: true, allowHalfOpen: true }, (s) => { s.on('error', () => s.destroy()); handle(s) }).listen(port, '127.0.0.1')
  }
  serve(bulkPort, bulk)
  serve(greetPort, greet)
  // The bench holds our stdin open; when it goes away (even killed), so do we.
  process.stdin.on('end', () => process.exit(0)).on('error', () => process.exit(0)).resume()
}
