// HTTP/1.1 requests node's parser accepts but a proxy must not (Transfer-Encoding in HTTP/1.0, no
// Host), and the rule that nothing after a connection's last answer is a request.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'

/** Connections whose current answer is their last: nothing node parses after it is a request. */
const closing = new WeakSet<object>()

/**
 * This request's answer is the last on its connection (`res`, when there is one, is told not to
 * keep it alive). node goes on parsing requests pipelined behind it and emits them after the
 * answer that closes the connection was decided; afterLastAnswer() drops them.
 */
export function lastOnConnection (req: IncomingMessage, res?: ServerResponse): void {
  closing.add(req.socket)
  if (res !== undefined) res.shouldKeepAlive = false
}

/**
 * RFC 9112 §6.1: an HTTP/1.0 request with Transfer-Encoding has faulty framing (where its body ends
 * is exactly what request smuggling plays on); with `requireHost`, RFC 9112 §3.2: an HTTP/1.1
 * request without Host. Returns why, to refuse it with 400; its connection closes after that answer.
 */
export function faultyFraming (req: IncomingMessage, res?: ServerResponse, requireHost = false): string | undefined {
  let why: string | undefined
  if (req.httpVersionMajor === 1 && req.httpVersionMinor === 0 && req.headers['transfer-encoding'] !== undefined) {
    why = 'Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1): the connection is closed'
  } else if (requireHost && req.httpVersionMajor === 1 && req.httpVersionMinor === 1 && req.headers.host === undefined) {
    why = 'an HTTP/1.1 request needs a Host header (RFC 9112 §3.2): the connection is closed'
  }
  if (why !== undefined) lastOnConnection(req, res)
  return why
}

/**
 * A request node parsed after its connection's last answer was decided (pipelined in the same
 * bytes): it is no request at all, never forwarded nor answered; the connection closes after that
 * answer and the client may send it again on another.
 */
export function afterLastAnswer (req: IncomingMessage): boolean {
  if (!closing.has(req.socket)) return false
  req.resume()
  return true
}

/**
 * Bytes that are no request (node's parser failed: 'clientError') after requests it did parse on
 * the same connection: their answers go first, in order, then `answer` (a 400) and the close. node's
 * default, and the sidecar's until the fuzz test caught it, wrote the 400 at once: the client took
 * it for the answer to its earlier, valid request, whose real answer was then lost.
 */
export function answerAfterPending (socket: Duplex, answer: string): void {
  // The response node is writing on this socket (queued ones take its place as each finishes).
  const pending = (socket as { _httpMessage?: ServerResponse | null })._httpMessage
  const waiting = pending !== undefined && pending !== null && !pending.writableFinished && !pending.destroyed
  // Only a request received whole can still be answered; one whose own body broke off cannot.
  if (waiting && pending.req.complete) {
    pending.once('finish', () => { setImmediate(() => { answerAfterPending(socket, answer) }) })
    pending.once('close', () => { if (!pending.writableFinished) socket.destroy() })
    return
  }
  if (!socket.writable || (waiting && pending.headersSent)) { socket.destroy(); return }
  socket.end(answer, () => socket.destroy())
}
