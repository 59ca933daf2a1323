// The opaque-TCP transport header between sidecars: magic, length, then JSON naming the target port.
import type { Duplex } from 'node:stream'

/**
 * `\0RMT`: a zero first byte is neither TLS, HTTP/2 nor an HTTP/1.x method, so the inbound listener
 * tells a plaintext opaque stream from the rest by its first four bytes (with mTLS the ALPN
 * `remora-tcp/1` says it before any byte).
 */
export const TCP_MAGIC = Buffer.from([0x00, 0x52, 0x4d, 0x54])
export const TCP_ALPN = 'remora-tcp/1'
/** A header bigger than this is not ours: the connection is closed. */
const MAX_HEADER = 4096

export interface TcpHeader {
  /** The app port on the peer workload. */
  readonly port: number
}

export function encodeTcpHeader (h: TcpHeader): Buffer {
  const body = Buffer.from(JSON.stringify({ v: 1, port: h.port }))
  const head = Buffer.alloc(6)
  TCP_MAGIC.copy(head, 0)
  head.writeUInt16BE(body.length, 4)
  return Buffer.concat([head, body])
}

/**
 * Reads the header off the front of `socket`, puts back whatever followed it, and calls `then`
 * with the header or with why it is not one (the caller closes the connection).
 */
export function readTcpHeader (socket: Duplex, then: (header: TcpHeader | Error) => void): void {
  let buf: Buffer = Buffer.alloc(0)
  let done = false
  const finish = (result: TcpHeader | Error, rest?: Buffer): void => {
    if (done) return
    done = true
    socket.removeListener('data', onData)
    socket.removeListener('end', onEnd)
    socket.pause()
    if (rest !== undefined && rest.length > 0) socket.unshift(rest)
    then(result)
  }
  const onData = (chunk: Buffer): void => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
    if (buf.length < 6) return
    if (!buf.subarray(0, 4).equals(TCP_MAGIC)) return finish(new Error('not a remora-tcp header (bad magic)'))
    const n = buf.readUInt16BE(4)
    if (n > MAX_HEADER) return finish(new Error(`remora-tcp header of ${n} bytes is too big`))
    if (buf.length < 6 + n) return
    let parsed: unknown
    try { parsed = JSON.parse(buf.subarray(6, 6 + n).toString('utf8')) } catch { return finish(new Error('remora-tcp header is not JSON')) }
    const port = (parsed as { port?: unknown } | null)?.port
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) return finish(new Error('remora-tcp header names no valid port'))
    finish({ port }, buf.subarray(6 + n))
  }
  const onEnd = (): void => finish(new Error('connection ended before the remora-tcp header'))
  socket.on('data', onData)
  socket.once('end', onEnd)
  socket.resume()
}
