// Protocol detection from a connection's first bytes: HTTP/2 preface, TLS ClientHello, HTTP/1.1,
// remora's opaque-TCP header, or none of them (opaque).
import type { Socket } from 'node:net'
import { TCP_MAGIC } from './tcp-header.ts'

/**
 * `unknown`: bytes of no protocol we speak; `timeout`: no byte in time (a server-speaks-first protocol?);
 * `h2-invalid`: `PRI ` that is no HTTP/2 preface (RFC 9113 §3.4: a connection error; PRI is no HTTP/1.1 method).
 */
export type Detected = 'h2' | 'http1' | 'tls' | 'remora-tcp' | 'unknown' | 'timeout' | 'h2-invalid'

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')
/** A method token as node's HTTP/1.1 parser knows them (UNSUBSCRIBE has 11 letters, M-SEARCH a hyphen). */
const MAX_METHOD = 20
const METHOD = /^[A-Z][A-Z-]{2,19} /
const METHOD_SO_FAR = /^[A-Z][A-Z-]*$/
/** Empty lines a client may send before the request line (RFC 9112 §2.2): skipped, as node's parser does. */
const LEADING_EMPTY_LINES = /^(?:\r?\n)*/

export function classifyBytes (buf: Buffer): Detected | undefined {
  if (buf.length === 0) return undefined
  if (buf[0] === 0x16) return 'tls'
  if (buf[0] === TCP_MAGIC[0]) {
    const n = Math.min(buf.length, TCP_MAGIC.length)
    if (!buf.subarray(0, n).equals(TCP_MAGIC.subarray(0, n))) return 'unknown'
    return n === TCP_MAGIC.length ? 'remora-tcp' : undefined
  }
  const n = Math.min(buf.length, PREFACE.length)
  if (buf.subarray(0, n).equals(PREFACE.subarray(0, n))) return n === PREFACE.length ? 'h2' : undefined
  const text = buf.subarray(0, 64).toString('latin1')
  const head = text.slice(LEADING_EMPTY_LINES.exec(text)?.[0].length ?? 0)
  if (head === '' && buf.length < 64) return undefined
  if (head.startsWith('PRI ')) return 'h2-invalid'
  if (METHOD.test(head)) return 'http1'
  if (head.length <= MAX_METHOD && METHOD_SO_FAR.test(head)) return undefined
  return 'unknown'
}

/**
 * Reads until the protocol is known, then puts the bytes back so the real server sees the whole
 * stream; `then` also gets those first bytes (a ClientHello's SNI is read from them). A client that
 * says nothing for `timeoutMs` is `timeout`.
 */
export function detect (socket: Socket, timeoutMs: number, then: (kind: Detected, head: Buffer) => void): void {
  let buf: Buffer = Buffer.alloc(0)
  const timer = setTimeout(() => finish(buf.length === 0 ? 'timeout' : 'unknown'), timeoutMs)
  const onData = (chunk: Buffer): void => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
    const kind = classifyBytes(buf)
    if (kind !== undefined) finish(kind)
    else if (buf.length > 64 * 1024) finish('unknown')
  }
  const onEnd = (): void => finish('unknown')
  function finish (kind: Detected): void {
    clearTimeout(timer)
    socket.removeListener('data', onData)
    socket.removeListener('end', onEnd)
    socket.pause()
    if (buf.length > 0) socket.unshift(buf)
    then(kind, buf)
  }
  socket.on('data', onData)
  socket.once('end', onEnd)
  socket.on('error', () => clearTimeout(timer))
}
