// Forwards an exchange to an HTTP/1.1 origin (the local app, an egress destination outside the
// mesh, or a peer sidecar: http/peer-http1.ts) through undici's connection pools, whatever protocol
// the caller spoke (an h2 or gRPC exchange is translated: chunked body, chunked trailers).
import { PassThrough, type Readable } from 'node:stream'
import { createRequire } from 'node:module'
import http, { type IncomingHttpHeaders } from 'node:http'
import type { Logger } from 'pino'
import type { Agent as AgentType, Dispatcher } from 'undici'
import { ProxyErrors, type ProxyErrorReason } from '../errors.ts'
import type { Exchange } from './exchange.ts'
import { bodyless, forwardable, type Headers } from './headers.ts'
import { endedWhole } from './body-end.ts'
import { LogThrottle } from '../telemetry/throttle.ts'
import { classify, neverConnected, type RelayReasons } from './upstream-errors.ts'
import { pipeBody, type Attempt, type AttemptHooks } from './relay-h2.ts'
import type { Connector } from '../transport/peer-http1.ts'
import { respondError, type ResponseSink } from './response-sink.ts'
import { countBytes } from './count-bytes.ts'

/** The caller's body as a stream undici may destroy; a caller's reset never ends it cleanly. */
function relayed (body: Readable): PassThrough {
  const through = new PassThrough({ highWaterMark: 64 * 1024 })
  pipeBody(body, through)
  return through
}

// undici's entry point loads all of it (fetch, WebSocket, mocks: ~17 MB of RSS); the sidecar needs
// the Agent alone: requests go through its dispatch() with a handler of ours (H1Attempt), without the
// request API's promise, response stream, pipe and abort signal per request. Loaded with the first
// HTTP/1.1 request, not at start: a sidecar whose traffic is all h2, gRPC or TCP never holds it.
const require = createRequire(import.meta.url)
let undiciAgent: typeof AgentType | undefined
const loadAgent = (): typeof AgentType => (undiciAgent ??= require('undici/lib/dispatcher/agent.js') as typeof AgentType)

/**
 * Request trailers, however the caller sent them (h2 trailers arrive as 'trailers' on the stream,
 * HTTP/1.1 chunked ones land on `req.trailers` by the end of the body).
 */
function onRequestTrailers (body: Readable, listener: (names: string[]) => void): void {
  body.once('trailers', (raw: IncomingHttpHeaders) => listener(Object.keys(forwardable(raw, true))))
  body.once('end', () => {
    const h1 = (body as { trailers?: IncomingHttpHeaders }).trailers
    if (h1 !== undefined && Object.keys(h1).length > 0) listener(Object.keys(forwardable(h1, true)))
  })
}

/** undici could not parse the app's answer as HTTP/1.1 (an h2 server answers with a GOAWAY frame). */
function notHttp1 (err: NodeJS.ErrnoException): boolean {
  return err.name === 'HTTPParserError' || err.code?.startsWith('HPE_') === true
}

export interface Http1Hooks extends AttemptHooks {
  /** The origin answered something that is not HTTP/1.1 (its protocol changed). */
  readonly onNotHttp1?: (why: string) => void
  /** The request is being written on a connection (the pool had one, or made one): latency counts from here. */
  readonly onDispatched?: () => void
}

export class Http1Origins {
  readonly #agentOptions: ConstructorParameters<typeof AgentType>[0]
  /** undici's pools, made with the first request (loadAgent). */
  #agent: AgentType | undefined
  readonly #log: Logger | undefined
  readonly #dropped = new LogThrottle()
  /** For the few requests with announced trailers: node's client writes them, undici does not. */
  readonly #trailerAgent = new http.Agent({ keepAlive: true, keepAliveMsecs: 4_000, maxFreeSockets: 16 })

  /**
   * `connect`: how connections are opened (peer sidecars: mTLS, transport/peer-http1.ts); plain TCP
   * by default. `maxIdleMs`: an idle connection is closed after this long at most, whatever the
   * server's Keep-Alive says (undici's default: 10 minutes).
   */
  constructor (connectTimeout: number, log?: Logger, connect?: Connector, maxIdleMs?: number) {
    this.#log = log
    this.#agentOptions = {
      connect: connect ?? { timeout: connectTimeout },
      // Timeouts are a per-service policy (resilience); here a slow or streaming app is legal.
      headersTimeout: 0,
      bodyTimeout: 0,
      keepAliveTimeout: 4_000,
      ...(maxIdleMs === undefined ? {} : { keepAliveMaxTimeout: maxIdleMs }),
      pipelining: 1,
    }
  }

  #pools (): AgentType { return (this.#agent ??= new (loadAgent())(this.#agentOptions)) }

  /**
   * The app or an egress destination. `origin`: `http://host:port`; `reasons`: how its connection
   * failures are named (app or egress); `onNotHttp1`: it answered something that is not HTTP/1.1.
   */
  forward (origin: string, ex: Exchange, headers: Headers, sink: ResponseSink, reasons: RelayReasons, onNotHttp1?: (why: string) => void): void {
    // A body whose caller announced trailers (`Trailer`, RFC 9110 §6.6.2) goes chunked with them.
    if (ex.body !== null && headers.trailer !== undefined && headers['content-length'] === undefined) {
      forwardWithTrailers(this.#trailerAgent, origin, ex, headers, sink, reasons)
      return
    }
    if (ex.body !== null) countBytes(ex.body, (n) => { ex.record.bytesIn += n })
    this.relay(origin, ex, { ...headers, host: ex.authority }, ex.body, sink, reasons, { onNotHttp1 })
  }

  /**
   * One attempt: `headers` as sent (Host included), `body` this attempt's copy of the caller's;
   * the answer goes to `sink` unless a hook takes it (a caller that retries, as relayOverH2).
   */
  relay (origin: string, ex: Exchange, headers: Headers, body: Readable | null, sink: ResponseSink, reasons: RelayReasons, hooks: Http1Hooks = {}): Attempt {
    // Complete, but the caller cut its upload: the app must not take the rest for a whole body.
    const upload = body === null ? undefined : relayed(body)
    if (ex.body !== null) {
      // undici writes no request trailers: unannounced ones (an h2 caller's, most often) are dropped,
      // the body goes through whole, and the log says so. Announced ones took node's client.
      onRequestTrailers(ex.body, (names) => {
        if (names.length === 0) return
        this.#dropped.run(origin, (suppressed) => this.#log?.warn({
          origin,
          port: Number(new URL(origin).port || 80),
          trailers: names,
          suppressed,
          why: 'this origin speaks HTTP/1.1, and the sidecar sends HTTP/1.1 request bodies without trailers',
        }, 'request trailers dropped'))
      })
    }
    const call = new H1Attempt(ex, sink, reasons, upload, hooks)
    sink.onClose((completed) => { if (!completed || (upload !== undefined && !upload.writableEnded)) call.cancel() })
    this.#pools().dispatch({
      origin,
      method: ex.method as Dispatcher.HttpMethod,
      path: ex.path,
      headers,
      // undici destroys a body stream when done with it; the caller's stream must outlive that.
      body: upload,
    }, call)
    return call
  }

  async close (): Promise<void> { this.#trailerAgent.destroy(); await this.#agent?.close() }
  destroy (): void { this.#trailerAgent.destroy(); void this.#agent?.destroy() }
}

/**
 * The request through node's HTTP/1.1 client, chunked, with the caller's trailers at the end (h2
 * 'trailers' on the stream, or an HTTP/1.1 caller's on `req.trailers`). The response goes through
 * the same relay as on the undici path.
 */
function forwardWithTrailers (agent: http.Agent, origin: string, ex: Exchange, headers: Headers, sink: ResponseSink, reasons: RelayReasons): void {
  const record = ex.record
  const body = ex.body as Readable
  const url = new URL(origin)
  const relay = new ResponseRelay(ex, sink)
  let req: http.ClientRequest
  try {
    // Chunked whatever the method: node would write a GET's body unframed and throw at its trailers.
    req = http.request({ agent, host: url.hostname, port: url.port, method: ex.method, path: ex.path, headers: { ...headers, host: ex.authority, 'transfer-encoding': 'chunked' } })
  } catch (err) {
    // A header node refuses to write: the caller's request is at fault.
    relay.refuse(ProxyErrors.malformedRequest, (err as Error).message)
    body.resume()
    return
  }
  let h2Trailers: Headers | undefined
  body.once('trailers', (raw: IncomingHttpHeaders) => { h2Trailers = forwardable(raw, true) })
  countBytes(body, (n) => { record.bytesIn += n })
  body.pipe(req, { end: false })
  body.once('end', () => {
    // node ends a reset h2 stream too: a cut-off body must never look whole to the app.
    if (!endedWhole(body)) { req.destroy(); return }
    const h1 = (body as { trailers?: IncomingHttpHeaders }).trailers
    const trailers = h2Trailers ?? forwardable(h1 ?? {}, true)
    if (Object.keys(trailers).length > 0) req.addTrailers(trailers as http.OutgoingHttpHeaders)
    req.end()
  })
  sink.onClose((completed) => { if (!completed || !req.writableEnded) req.destroy() })
  req.on('error', (err: NodeJS.ErrnoException) => {
    if (relay.started) relay.cut(reasons.reset)
    else relay.refuse(classify(err, reasons), err.message)
  })
  req.on('response', (res) => {
    if (relay.done || !relay.start(res.statusCode ?? 502, forwardable(res.headers, true))) { res.resume(); return }
    res.on('data', (chunk: Buffer) => { if (!relay.data(chunk, () => res.resume())) res.pause() })
    res.once('end', () => relay.end(forwardable(res.trailers, true)))
    res.once('error', () => relay.cut(reasons.reset))
  })
}

/**
 * The origin's answer to the caller, from either client: the head (a grpc-status in it or in the
 * trailers is recorded by the sink), the body written as it comes with the client paused while the
 * caller is behind, the trailers at its end, an error midway a reset (`app reset`). Once `done`
 * (answered, cut or refused) nothing more reaches the caller.
 */
class ResponseRelay {
  readonly #ex: Exchange
  readonly #sink: ResponseSink
  done = false
  started = false
  #onDrain: (() => void) | undefined

  constructor (ex: Exchange, sink: ResponseSink) {
    this.#ex = ex
    this.#sink = sink
  }

  /** The head; false when the answer has no body (it is complete already). */
  start (status: number, headers: Headers): boolean {
    this.started = true
    const end = bodyless(this.#ex.method, status)
    this.#sink.respond(status, headers, end)
    if (end) this.done = true
    return !end
  }

  /** A piece of the body; false when the caller is behind: pause, and `resume` is called once it caught up. */
  data (chunk: Buffer, resume: () => void): boolean {
    if (this.done) return true
    this.#ex.record.bytesOut += chunk.length
    if (this.#sink.body.write(chunk)) return true
    if (this.#onDrain === undefined) {
      this.#onDrain = resume
      this.#sink.body.once('drain', () => { this.#onDrain = undefined; resume() })
    }
    return false
  }

  /** The end, with the origin's trailers already filtered for the caller (as `start`'s headers). */
  end (trailers: Headers): void {
    if (this.done) return
    this.done = true
    this.#sink.finish(trailers)
  }

  /** The origin's answer broke off midway. */
  cut (reason: ProxyErrorReason): void {
    if (this.done) return
    this.done = true
    this.#ex.record.error = reason.reason
    this.#sink.abort()
  }

  /** No answer from the origin: the proxy answers `reason` itself. */
  refuse (reason: ProxyErrorReason, detail: string): void {
    if (this.done) return
    this.done = true
    this.#ex.record.error = reason.reason
    respondError(this.#sink, reason, { grpc: this.#ex.grpc, detail })
  }
}

/**
 * One request to the origin through undici's dispatch(): its answer goes straight to the relay (no
 * response stream, no promise). `cancel` (the caller is gone, or retries elsewhere) is silent; a
 * request still queued for a connection is aborted when it reaches one.
 */
class H1Attempt implements Dispatcher.DispatchHandler, Attempt {
  readonly #ex: Exchange
  readonly #relay: ResponseRelay
  readonly #reasons: RelayReasons
  readonly #upload: PassThrough | undefined
  readonly #hooks: Http1Hooks
  #controller: Dispatcher.DispatchController | undefined
  #cancelled = false
  #closed = false
  #idle: NodeJS.Timeout | undefined
  #idleFired = false

  constructor (ex: Exchange, sink: ResponseSink, reasons: RelayReasons, upload: PassThrough | undefined, hooks: Http1Hooks) {
    this.#ex = ex
    this.#relay = new ResponseRelay(ex, sink)
    this.#reasons = reasons
    this.#upload = upload
    this.#hooks = hooks
    const idleMs = hooks.idleTimeoutMs ?? 0
    if (idleMs > 0) {
      // No bytes either way for this long: reset (as relayOverH2's stream timeout).
      this.#idle = setTimeout(() => { this.#idleFired = true; this.#controller?.abort(new Error('idle timeout')) }, idleMs)
      // Counted once undici reads it: a 'data' listener of ours would set the body flowing before then.
      if (upload !== undefined) countBytes(upload, () => this.#idle?.refresh())
    }
  }

  cancel (): void {
    if (this.#cancelled) return
    this.#cancelled = true
    this.#relay.done = true
    this.#controller?.abort(new Error('the caller is gone'))
  }

  onRequestStart (controller: Dispatcher.DispatchController): void {
    this.#controller = controller
    if (this.#cancelled) { controller.abort(new Error('the caller is gone')); return }
    this.#hooks.onDispatched?.()
  }

  onResponseStart (controller: Dispatcher.DispatchController, status: number, raw: IncomingHttpHeaders): void {
    // 1xx (100 Continue, 103 Early Hints): the sidecar answers Expect itself and forwards neither.
    if (status < 200 || this.#relay.done) return
    this.#idle?.refresh()
    const headers = forwardable(raw, !this.#reasons.trustMeshHeaders)
    if (this.#hooks.onResponse?.(status, headers, bodyless(this.#ex.method, status)) === false) {
      // Dropped for a retry: the caller answers, not this attempt.
      this.cancel()
      return
    }
    this.#relay.start(status, headers)
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#idle?.refresh()
    if (!this.#relay.data(chunk, () => controller.resume())) controller.pause()
  }

  onResponseEnd (controller: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    this.#relay.end(forwardable(trailers, !this.#reasons.trustMeshHeaders))
    this.#close()
  }

  onResponseError (controller: Dispatcher.DispatchController | null, err: NodeJS.ErrnoException): void {
    if (this.#upload !== undefined && !this.#upload.destroyed) this.#upload.destroy()
    try {
      this.#failed(err)
    } finally {
      this.#close()
    }
  }

  #failed (err: NodeJS.ErrnoException): void {
    const relay = this.#relay
    if (this.#idleFired && !relay.done) {
      if (relay.started) { relay.cut(ProxyErrors.timeout); return }
      const detail = `no bytes either way for ${this.#hooks.idleTimeoutMs} ms (idle timeout)`
      if (this.#hooks.onFailure?.(ProxyErrors.timeout, detail, false) === true) relay.done = true
      else relay.refuse(ProxyErrors.timeout, detail)
      return
    }
    if (this.#cancelled || relay.done) return
    if (relay.started) { relay.cut(this.#reasons.reset); return }
    if (notHttp1(err)) this.#hooks.onNotHttp1?.(`the app answered HTTP/1.1 with something else (${err.message})`)
    const reason = err.code === 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH' || err.code === 'UND_ERR_INVALID_ARG'
      ? ProxyErrors.malformedRequest
      : classify(err, this.#reasons)
    if (reason !== ProxyErrors.malformedRequest && this.#hooks.onFailure?.(reason, err.message, neverConnected(err)) === true) { relay.done = true; return }
    relay.refuse(reason, err.message)
  }

  #close (): void {
    if (this.#closed) return
    this.#closed = true
    clearTimeout(this.#idle)
    this.#hooks.onClose?.()
  }
}
