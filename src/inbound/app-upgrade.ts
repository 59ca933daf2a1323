// Carries an HTTP/1.1 Upgrade (WebSocket and others) to the local app; after 101 the bytes are opaque.
import http from 'node:http'
import type { Socket } from 'node:net'
import type { Exchange } from '../http/exchange.ts'
import { bodyless, forwardable, type Headers } from '../http/headers.ts'
import { classify, APP_REASONS } from '../http/upstream-errors.ts'
import { respondError, type ResponseSink } from '../http/response-sink.ts'
import { countBytes } from '../http/count-bytes.ts'
import { refuse } from '../http/refuse.ts'
import { ProxyErrors } from '../errors.ts'

export function upgradeToApp (port: number, ex: Exchange, headers: Headers, sink: ResponseSink, connectTimeout: number): void {
  const record = ex.record
  // An upgrade carries no body, so no trailers: node throws at end() on a Trailer header without
  // chunked framing (the fuzz test's crash: `Trailer: x` on a WebSocket upgrade took the sidecar down).
  const { trailer: _noBody, ...sent } = headers
  let req: http.ClientRequest
  try {
    req = http.request({
      host: '127.0.0.1',
      port,
      method: ex.method,
      path: ex.path,
      headers: { ...sent, host: ex.authority, connection: 'Upgrade', upgrade: ex.upgrade },
      timeout: connectTimeout,
      agent: false,
    })
  } catch (err) {
    // A header node refuses to send: the caller's request, not the app, is at fault.
    refuse(ex, sink, ProxyErrors.malformedRequest, (err as Error).message)
    return
  }
  req.once('socket', (s: Socket) => s.once('connect', () => req.setTimeout(0)))
  req.once('timeout', () => req.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })))
  req.once('upgrade', (res, socket, head) => {
    if (head.length > 0) socket.unshift(head)
    const out = forwardable(res.headers, true)
    out.upgrade = res.headers.upgrade ?? ex.upgrade ?? 'websocket'
    // The caller's side (an h2 stream or a raw socket) is the sink itself; it splices the two.
    sink.upgrade(out, socket)
    countBytes(socket, (n) => { record.bytesOut += n })
  })
  req.once('response', (res) => {
    const status = res.statusCode ?? 502
    const end = bodyless(ex.method, status)
    sink.respond(status, forwardable(res.headers, true), end)
    if (end) { res.resume(); return }
    res.pipe(sink.body, { end: false })
    res.once('end', () => sink.finish())
  })
  req.once('error', (err: NodeJS.ErrnoException) => {
    const reason = classify(err, APP_REASONS)
    record.error = reason.reason
    respondError(sink, reason, { grpc: false, detail: err.message })
  })
  sink.onClose((completed) => { if (!completed) req.destroy() })
  try { req.end() } catch (err) {
    req.destroy()
    refuse(ex, sink, ProxyErrors.malformedRequest, (err as Error).message)
  }
}

