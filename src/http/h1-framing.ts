// HTTP/1.1 framing that node's parser accepts but a proxy must not: Transfer-Encoding in HTTP/1.0.
import type { IncomingMessage, ServerResponse } from 'node:http'

/** Connections that sent a request with faulty framing: nothing after it is read as a request. */
const faulty = new WeakSet<object>()

/**
 * RFC 9112 §6.1: an HTTP/1.0 request with Transfer-Encoding has faulty framing (where its body ends
 * is exactly what request smuggling plays on). Returns why, to refuse it with 400; its connection
 * closes after that answer (`res`, when there is one, is told not to keep it alive).
 */
export function faultyFraming (req: IncomingMessage, res?: ServerResponse): string | undefined {
  if (req.httpVersionMajor !== 1 || req.httpVersionMinor !== 0 || req.headers['transfer-encoding'] === undefined) return undefined
  faulty.add(req.socket)
  if (res !== undefined) res.shouldKeepAlive = false
  return 'Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1): the connection is closed'
}

/**
 * A request node parsed after one with faulty framing on the same connection (pipelined in the same
 * bytes): it is no request at all, never forwarded nor answered; the connection closes after the 400.
 */
export function afterFaultyFraming (req: IncomingMessage): boolean {
  if (!faulty.has(req.socket)) return false
  req.resume()
  return true
}
