// Forwards an exchange to the local app over HTTP/1.1 through an undici connection pool.
import { PassThrough, type Readable } from 'node:stream'
import { createRequire } from 'node:module'
import type { Agent as AgentType, Dispatcher } from 'undici'
import { ProxyErrors } from '../errors.ts'
import type { Exchange } from '../http/exchange.ts'
import { bodyless, forwardable, type Headers } from '../http/headers.ts'
import { classify, pipeBody, APP_REASONS } from '../http/relay-h2.ts'
import { respondError, type ResponseSink } from '../http/response-sink.ts'
import { countBytes } from '../http/count-bytes.ts'

/** The caller's body as a stream undici may destroy; a caller's reset never ends it cleanly. */
function relayed (body: Readable): PassThrough {
  const through = new PassThrough({ highWaterMark: 64 * 1024 })
  pipeBody(body, through)
  return through
}

// undici's entry point loads all of it (fetch, WebSocket, mocks: ~17 MB of RSS); the sidecar needs
// the Agent and the request API only, so it loads just those two modules.
const require = createRequire(import.meta.url)
const Agent = require('undici/lib/dispatcher/agent.js') as typeof AgentType
Object.assign((require('undici/lib/dispatcher/dispatcher.js') as { prototype: object }).prototype, require('undici/lib/api/index.js'))

export class AppHttp1 {
  readonly #agent: AgentType

  constructor (connectTimeout: number) {
    this.#agent = new Agent({
      connect: { timeout: connectTimeout },
      // Timeouts are a per-service policy (resilience); here a slow or streaming app is legal.
      headersTimeout: 0,
      bodyTimeout: 0,
      keepAliveTimeout: 4_000,
      pipelining: 1,
    })
  }

  forward (port: number, ex: Exchange, headers: Headers, sink: ResponseSink): void {
    const abort = new AbortController()
    const record = ex.record
    let done = false
    sink.onClose((completed) => { if (!completed) abort.abort() })
    if (ex.body !== null) countBytes(ex.body, (n) => { record.bytesIn += n })

    this.#agent.request({
      origin: `http://127.0.0.1:${port}`,
      method: ex.method as Dispatcher.HttpMethod,
      path: ex.path,
      headers: { ...headers, host: ex.authority },
      // undici destroys a body stream when done with it; the caller's stream must outlive that.
      body: ex.body === null ? undefined : relayed(ex.body),
      signal: abort.signal,
    }).then(({ statusCode, headers: raw, body, trailers }) => {
      const out = forwardable(raw as Headers, true)
      const end = bodyless(ex.method, statusCode)
      sink.respond(statusCode, out, end)
      if (end) { done = true; body.resume(); return }
      body.pipe(sink.body, { end: false })
      countBytes(body, (n) => { record.bytesOut += n })
      body.once('end', () => {
        done = true
        sink.finish(forwardable(trailers as Headers, true))
      })
      body.once('error', () => {
        if (done) return
        done = true
        record.error = ProxyErrors.appReset.reason
        sink.abort()
      })
    }, (err: NodeJS.ErrnoException) => {
      if (abort.signal.aborted || done) return
      done = true
      const reason = err.code === 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH' || err.code === 'UND_ERR_INVALID_ARG'
        ? ProxyErrors.malformedRequest
        : classify(err, APP_REASONS)
      record.error = reason.reason
      respondError(sink, reason, { grpc: ex.grpc, detail: err.message })
    })
  }

  async close (): Promise<void> { await this.#agent.close() }
  destroy (): void { void this.#agent.destroy() }
}
