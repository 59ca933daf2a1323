// Where a response goes back to the caller: one interface over an HTTP/1.1 response, an h2 stream
// and a raw upgraded socket, so every upstream path relays responses the same way.
import { constants as h2c, type ServerHttp2Stream } from 'node:http2'
import type { Duplex, Writable } from 'node:stream'
import type { ProxyErrorReason } from '../errors.ts'
import { MeshHeader, type Headers } from './headers.ts'
import { splice } from '../transport/splice.ts'
import { statusLine } from './status-line.ts'
import { lastOnConnection } from './h1-framing.ts'
import type { CountedResponse } from './h1-server.ts'

export interface ResponseSink {
  /** Status and headers have gone out; from now on a failure can only reset the stream. */
  readonly headersSent: boolean
  readonly status: number
  /** The gRPC status the caller was sent (trailers-only response or trailers), whoever made it. */
  readonly grpcStatus: string | undefined
  readonly body: Writable
  respond (status: number, headers: Headers, endStream: boolean): void
  /** Ends the body, with trailers when the upstream sent some. */
  finish (trailers?: Headers): void
  /** Resets the caller's stream (h2 RST_STREAM with `code`) or closes its connection (HTTP/1.1). */
  abort (code?: number): void
  /** The app switched protocols: say so to the caller, then splice the two byte streams. */
  upgrade (headers: Headers, tunnel: Duplex): void
  /** Called once when the caller is gone, whether the response completed or not. */
  onClose (listener: (completed: boolean) => void): void
  /**
   * The proxy gives up on the caller (its body came too slowly): the exchange ends now, incomplete
   * (onClose listeners run: the upstream is cancelled, the slot freed, the line logged); the caller
   * gets `reason`'s status when nothing was sent yet, then its stream or connection is closed.
   */
  expire (reason: ProxyErrorReason, detail: string): void
}

/** Responses queued behind another on their connection, by connection: one 'close' listener ends them all. */
const queuedOn = new WeakMap<object, Set<() => void>>()

function whenConnectionCloses (socket: { once (event: 'close', listener: () => void): unknown }): (fire: () => void) => () => void {
  return (fire) => {
    let waiting = queuedOn.get(socket)
    if (waiting === undefined) {
      const set = waiting = new Set()
      queuedOn.set(socket, set)
      socket.once('close', () => { queuedOn.delete(socket); for (const f of set) f() })
    }
    waiting.add(fire)
    return () => { waiting.delete(fire) }
  }
}

/**
 * One 'close' listener per caller stream, however many parts of the path wait for it (access
 * record, limits, the call, the relay, spans): they run in the order they asked, as separate
 * listeners would, without five emitter registrations on every request.
 */
class CloseWaiters {
  #listeners: Array<(completed: boolean) => void> | undefined
  #fire: ((completed?: boolean) => void) | undefined

  /** `also`: subscribes to a second end of the caller's stream (whichever comes first); returns its unsubscribe. */
  add (emitter: { once (event: 'close', listener: () => void): unknown }, completed: () => boolean, listener: (completed: boolean) => void, also?: (fire: () => void) => () => void): void {
    if (this.#listeners === undefined) {
      const listeners: Array<(completed: boolean) => void> = this.#listeners = []
      let fired = false
      const fire = (forced?: boolean): void => {
        if (fired) return
        fired = true
        unsubscribe?.()
        const done = forced ?? completed()
        // Only those registered before the close, as with emitter listeners.
        for (let i = 0, n = listeners.length; i < n; i++) listeners[i](done)
      }
      this.#fire = fire
      emitter.once('close', () => { fire() })
      const unsubscribe = also?.(fire)
    }
    this.#listeners.push(listener)
  }

  /** The exchange ends now, incomplete, whatever the caller's stream does next (its close is then a no-op). */
  endNow (): void { this.#fire?.(false) }
}

/** The proxy's own answer when it gives up on a caller: the reason in its header, and the why as its body. */
function expiryAnswer (reason: ProxyErrorReason, detail: string): { headers: Headers, body: Buffer } {
  const body = Buffer.from(`${reason.reason}: ${detail}\n${reason.hint}\n`)
  return { headers: { [MeshHeader.proxyError]: reason.reason, 'content-type': 'text/plain; charset=utf-8', 'content-length': String(body.length) }, body }
}

/** A `grpc-status` among headers or trailers being sent, as the access record counts it. */
function grpcStatusIn (headers: Headers | undefined, previous: string | undefined): string | undefined {
  const v = headers?.['grpc-status']
  return v === undefined ? previous : String(v)
}

export interface ErrorContext { readonly grpc: boolean, readonly detail?: string }

/** Sends a response the proxy made itself: HTTP status + reason header, or gRPC trailers-only. */
export function respondError (sink: ResponseSink, reason: ProxyErrorReason, ctx: ErrorContext): void {
  if (sink.headersSent) { sink.abort(h2c.NGHTTP2_INTERNAL_ERROR); return }
  const message = ctx.detail !== undefined ? `${reason.reason}: ${ctx.detail}` : reason.reason
  if (ctx.grpc) {
    sink.respond(200, {
      'content-type': 'application/grpc',
      'grpc-status': String(reason.grpcStatus),
      'grpc-message': grpcMessage(message),
      [MeshHeader.proxyError]: reason.reason,
    }, true)
    return
  }
  const body = Buffer.from(`${message}\n${reason.hint}\n`)
  sink.respond(reason.status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': String(body.length),
    [MeshHeader.proxyError]: reason.reason,
  }, false)
  sink.body.write(body)
  sink.finish()
}

/**
 * grpc-message percent-encoding (gRPC over HTTP/2 spec): only '%' and bytes outside 0x20-0x7E are
 * escaped. encodeURIComponent would also escape ':' and '/', which decoders (grpc-js uses
 * decodeURI) leave as `%3A`, so every proxy detail would arrive mangled.
 */
function grpcMessage (message: string): string {
  let out = ''
  for (const byte of Buffer.from(message, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
  }
  return out
}

export class H1Sink implements ResponseSink {
  readonly #res: CountedResponse
  status = 0
  grpcStatus: string | undefined
  /** The response's Content-Length: once all of it was written, the answer is complete. */
  #length: number | undefined
  readonly #drain: { readonly draining: boolean }
  /** While draining, each response closes its connection so clients move to another endpoint. */
  constructor (res: CountedResponse, drain: { readonly draining: boolean }) {
    this.#res = res
    this.#drain = drain
  }
  get headersSent (): boolean { return this.#res.headersSent }
  get body (): Writable { return this.#res }

  respond (status: number, headers: Headers, endStream: boolean): void {
    this.status = status
    this.grpcStatus = grpcStatusIn(headers, this.grpcStatus)
    const length = headers['content-length']
    if (length !== undefined) this.#length = Number(length)
    // Decided when the answer goes out, not when the request came: one that arrived before the
    // drain began closes its connection too (a peer's pool would keep it, idle, for seconds).
    if (this.#drain.draining) lastOnConnection(this.#res.req, this.#res)
    this.#res.writeHead(status, headers)
    if (endStream) this.#res.end()
  }

  finish (trailers?: Headers): void {
    this.grpcStatus = grpcStatusIn(trailers, this.grpcStatus)
    if (trailers !== undefined && Object.keys(trailers).length > 0 && !this.#res.hasHeader('content-length')) {
      this.#res.addTrailers(trailers)
    }
    this.#res.end()
  }

  abort (): void { this.#res.destroy() }

  upgrade (): void { throw new Error('an HTTP/1.1 request without Upgrade cannot switch protocols') }

  expire (reason: ProxyErrorReason, detail: string): void {
    const socket = this.#res.req.socket
    // Only the response on the wire may answer; one queued behind another (pipelining) cannot.
    const answer = !this.headersSent && this.#res.socket !== null && socket.writable
    if (answer) this.status = reason.status
    this.#closers.endNow()
    if (!answer) { socket.destroy(); return }
    // Written on the socket, not through the response: nothing may follow it on this connection,
    // and the rest of the caller's body is never read (closed once the answer is out).
    const { headers, body } = expiryAnswer(reason, detail)
    socket.write(statusLine(reason.status, { ...headers, connection: 'close' }))
    socket.end(body, () => socket.destroy())
  }

  readonly #closers = new CloseWaiters()
  onClose (listener: (completed: boolean) => void): void {
    // A response queued behind another on its connection (pipelining) has no socket yet: node never
    // emits its 'close' when the connection goes first, so the connection's close ends it.
    const queued = this.#res.socket === null ? whenConnectionCloses(this.#res.req.socket) : undefined
    // A client that has all Content-Length bytes may close before the upstream's end-of-stream (a
    // separate frame) reaches us: that answer was complete, not reset.
    this.#closers.add(this.#res, () => this.#res.writableFinished || (this.#length !== undefined && this.#res.bodyBytes >= this.#length), listener, queued)
  }
}

export class H2Sink implements ResponseSink {
  readonly #stream: ServerHttp2Stream
  #trailers: Headers | undefined
  #sent = false
  /**
   * END_STREAM went to the caller after the whole body: node asks for trailers only once nghttp2
   * writes the last DATA frame (past flow control), and a headers-only answer carries it itself.
   */
  #ended = false
  status = 0
  grpcStatus: string | undefined
  constructor (stream: ServerHttp2Stream) {
    this.#stream = stream
    // A reset from the caller (other than CANCEL) is an 'error'; unheard, it is thrown and 'close'
    // never comes, so the upstream request is never cancelled. onClose reads rstCode instead.
    stream.on('error', () => {})
  }

  get headersSent (): boolean { return this.#sent || this.#stream.headersSent }
  get body (): Writable { return this.#stream }

  respond (status: number, headers: Headers, endStream: boolean): void {
    if (this.#stream.destroyed || this.#stream.closed) return
    this.status = status
    this.grpcStatus = grpcStatusIn(headers, this.grpcStatus)
    this.#sent = true
    this.#stream.respond({ ...headers, ':status': status }, { endStream, waitForTrailers: !endStream })
    if (endStream) this.#ended = true
    else {
      // An empty trailers block becomes an empty DATA frame with END_STREAM (node does this itself).
      this.#stream.once('wantTrailers', () => {
        this.#stream.sendTrailers(this.#trailers ?? {})
        this.#ended = true
      })
    }
  }

  finish (trailers?: Headers): void {
    this.grpcStatus = grpcStatusIn(trailers, this.grpcStatus)
    this.#trailers = trailers
    this.#stream.end()
  }

  abort (code: number = h2c.NGHTTP2_INTERNAL_ERROR): void {
    if (!this.#stream.closed) this.#stream.close(code)
  }

  upgrade (headers: Headers, tunnel: Duplex): void {
    this.#sent = true
    this.status = 101
    // `upgrade` is a connection header h2 forbids (respond() throws); it travels as a mesh header.
    const { upgrade, ...rest } = headers
    this.#stream.respond({ ...rest, ':status': 200, [MeshHeader.upgradeStatus]: '101', ...(upgrade === undefined ? {} : { [MeshHeader.upgrade]: upgrade }) })
    splice(this.#stream, tunnel)
  }

  expire (reason: ProxyErrorReason, detail: string): void {
    const stream = this.#stream
    const answer = !this.headersSent && !stream.closed && !stream.destroyed
    if (answer) this.status = reason.status
    this.#closers.endNow()
    if (stream.closed || stream.destroyed) return
    if (!answer) { stream.close(h2c.NGHTTP2_CANCEL); return }
    this.#sent = true
    this.#ended = true
    const { headers, body } = expiryAnswer(reason, detail)
    stream.respond({ ...headers, ':status': reason.status })
    // Once the answer is whole, RST_STREAM NO_ERROR tells the caller to stop sending (RFC 9113 §8.1).
    stream.end(body, () => { if (!stream.closed) stream.close(h2c.NGHTTP2_NO_ERROR) })
  }

  readonly #closers = new CloseWaiters()
  onClose (listener: (completed: boolean) => void): void {
    // A caller that had the whole answer may still reset its side (RST_STREAM CANCEL to stop an
    // upload the app no longer reads): that answer was complete, not a 'stream reset'.
    this.#closers.add(this.#stream, () => this.#ended || (this.#stream.rstCode === h2c.NGHTTP2_NO_ERROR && this.#stream.writableFinished), listener)
  }
}

/** Bytes a caller may send ahead of the 101 (kept for the tunnel); beyond them its socket is paused. */
const HOLD_LIMIT = 64 * 1024

/** The caller's raw socket after an HTTP/1.1 Upgrade request: we write the status line ourselves. */
export class RawSocketSink implements ResponseSink {
  readonly #socket: Duplex
  #sent = false
  status = 0
  /** An upgraded connection carries no gRPC. */
  readonly grpcStatus = undefined
  /** Gives back what `hold` read, for the tunnel; undefined when nothing is held. */
  #release: (() => void) | undefined
  constructor (socket: Duplex) { this.#socket = socket }
  get headersSent (): boolean { return this.#sent }
  get body (): Writable { return this.#socket }

  /**
   * An upgrade request waits for the app's answer. A paused socket never shows that the caller hung
   * up (its end is seen only by reading), and the request and the socket stayed open for ever; so
   * it is read meanwhile, up to HOLD_LIMIT bytes kept for the tunnel, and a caller gone before it
   * was answered is closed (the request ends as cancelled, the upstream attempt with it).
   */
  hold (head: Buffer): void {
    const socket = this.#socket
    const kept: Buffer[] = head.length > 0 ? [head] : []
    let size = head.length
    const onData = (chunk: Buffer): void => {
      kept.push(chunk)
      size += chunk.length
      if (size >= HOLD_LIMIT) socket.pause()
    }
    const onEnd = (): void => { if (!this.#sent) socket.destroy() }
    socket.on('data', onData)
    socket.once('end', onEnd)
    this.#release = () => {
      socket.off('data', onData)
      socket.off('end', onEnd)
      socket.pause()
      if (kept.length > 0) socket.unshift(Buffer.concat(kept))
    }
    if (size >= HOLD_LIMIT) socket.pause()
  }

  respond (status: number, headers: Headers, endStream: boolean): void {
    this.#sent = true
    this.status = status
    this.#socket.write(statusLine(status, { ...headers, connection: 'close' }))
    if (endStream) this.finish()
  }

  /**
   * The answer (connection: close) is complete: the connection goes once it is written. A paused
   * socket (a CONNECT or an upgrade waiting for its answer) never reads the caller's FIN, so ending
   * our side alone left it open, and the request in flight, for ever.
   */
  finish (): void { this.#socket.end(() => this.#socket.destroy()) }
  abort (): void { this.#socket.destroy() }

  /** A CONNECT tunnel is open: the bytes that follow are the tunnel's, both ways. */
  established (): void {
    this.#sent = true
    this.status = 200
    this.#socket.write('HTTP/1.1 200 Connection Established\r\n\r\n')
  }

  upgrade (headers: Headers, tunnel: Duplex): void {
    this.#sent = true
    this.status = 101
    const upgrade = headers[MeshHeader.upgrade] ?? headers.upgrade
    const rest: Headers = { ...headers }
    delete rest[MeshHeader.upgrade]
    delete rest[MeshHeader.upgradeStatus]
    delete rest.upgrade
    this.#release?.()
    this.#socket.write(statusLine(101, { connection: 'Upgrade', upgrade: upgrade ?? 'websocket', ...rest }))
    splice(this.#socket, tunnel)
  }

  /** A tunnel or upgrade has no request body to wait for; giving up closes it. */
  expire (): void {
    this.#closers.endNow()
    this.#socket.destroy()
  }

  readonly #closers = new CloseWaiters()
  onClose (listener: (completed: boolean) => void): void {
    this.#closers.add(this.#socket, () => this.#sent, listener)
  }
}

