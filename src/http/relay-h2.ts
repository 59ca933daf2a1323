// Sends an exchange as one stream on a multiplexed HTTP/2 connection and relays the response,
// trailers, resets and cancellation back through the caller's sink.
import { constants as h2c, sensitiveHeaders, type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2'
import type { Readable, Writable } from 'node:stream'
import type { ProxyErrorReason } from '../errors.ts'
import { ProxyErrors } from '../errors.ts'
import type { Exchange } from './exchange.ts'
import { bodyless, forwardable, MeshHeader, PER_REQUEST_HEADERS, type Headers } from './headers.ts'
import { respondError, type ResponseSink } from './response-sink.ts'
import { countBytes } from './count-bytes.ts'
import { classify, neverConnected, type RelayReasons } from './upstream-errors.ts'
import { dropRest, ReplayBody } from './replay-body.ts'
import { endedWhole } from './body-end.ts'

/**
 * node emits 'end' on an h2 stream the caller reset, as if the body were whole; a plain pipe would
 * then end the next hop's body (END_STREAM, or HTTP/1.1's last chunk) and the app would take a
 * cut-off upload for a complete one. Only a clean end ends `dest`; the reset is relayed on close.
 */
export function pipeBody (body: Readable, dest: Writable): void {
  body.pipe(dest, { end: false })
  body.once('end', () => { if (endedWhole(body)) dest.end() })
}

/** One attempt in flight; the caller may cancel it (timeout, caller gone, retry elsewhere). */
export interface Attempt { cancel (): void }

/** How a caller with retries takes part in an attempt; without hooks the relay answers everything itself. */
export interface AttemptHooks {
  /** The response head arrived; return false to drop it (the stream is cancelled) and retry. */
  readonly onResponse?: (status: number, headers: Headers, endStream: boolean) => boolean
  /**
   * Failed before any response reached the caller. `unprocessed`: the request surely never reached
   * the app (connection refused, REFUSED_STREAM, GOAWAY). Return true when the caller retries.
   */
  readonly onFailure?: (reason: ProxyErrorReason, detail: string, unprocessed: boolean) => boolean
  /** The upstream stream is gone, however it ended. */
  readonly onClose?: () => void
  /** Reset a stream that moves no bytes either way for this long (0 = never). */
  readonly idleTimeoutMs?: number
}

const NEVER_SENT = new Set(['ERR_HTTP2_GOAWAY_SESSION', 'ERR_HTTP2_INVALID_SESSION', 'ERR_HTTP2_OUT_OF_STREAMS'])
const MALFORMED = new Set(['ERR_HTTP2_INVALID_HEADER_VALUE', 'ERR_INVALID_HTTP_TOKEN', 'ERR_HTTP2_INVALID_CONNECTION_HEADERS', 'ERR_INVALID_CHAR', 'ERR_HTTP2_HEADER_SINGLE_VALUE', 'ERR_HTTP2_INVALID_PSEUDOHEADER'])

/**
 * `body`: the caller's body as is, or a copy a retry can send again (written straight into the
 * upstream stream); null when there is none.
 */
export function relayOverH2 (
  session: ClientHttp2Session,
  headers: OutgoingHttpHeaders,
  ex: Exchange,
  body: Readable | ReplayBody | null,
  sink: ResponseSink,
  reasons: RelayReasons,
  hooks: AttemptHooks = {},
): Attempt {
  const record = ex.record
  let up: ReturnType<ClientHttp2Session['request']>
  let finished = false
  let trailers: Headers | undefined
  let idle = false
  function fail (reason: ProxyErrorReason, detail: string, unprocessed: boolean): void {
    if (finished) return
    finished = true
    if (hooks.onFailure?.(reason, detail, unprocessed) === true) return
    record.error = reason.reason
    respondError(sink, reason, { grpc: ex.grpc, detail })
    dropRest(body)
  }

  // close(CANCEL) half-closes first: the peer can see END_STREAM before the reset and take a cut-off
  // upload for a whole (shorter) body. Aborting the signal resets with CANCEL and sends nothing more.
  const cancel = new AbortController()
  // Span ids stay out of HPACK's dynamic table (see PER_REQUEST_HEADERS).
  Reflect.set(headers, sensitiveHeaders, PER_REQUEST_HEADERS)
  try {
    up = session.request(headers, { endStream: body === null && ex.upgrade === undefined, signal: cancel.signal, waitForTrailers: body !== null })
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    if (MALFORMED.has(e.code ?? '')) fail(ProxyErrors.malformedRequest, e.message, false)
    else fail(classify(e, reasons), e.message, NEVER_SENT.has(e.code ?? ''))
    hooks.onClose?.()
    return { cancel: () => {} }
  }

  if (body !== null) {
    // Request trailers: an h2 caller's arrive as 'trailers'; an HTTP/1.1 caller's land on req.trailers.
    let bodyTrailers: Headers | undefined
    ex.body?.once('trailers', (raw: IncomingHttpHeaders) => { bodyTrailers = forwardable(raw, true) })
    up.once('wantTrailers', () => {
      const h1 = (ex.body as { trailers?: IncomingHttpHeaders } | null)?.trailers
      if (!up.closed) up.sendTrailers(bodyTrailers ?? forwardable(h1 ?? {}, true))
    })
    if (body instanceof ReplayBody) body.relayTo(up)
    else pipeBody(body, up)
  }
  if (hooks.idleTimeoutMs !== undefined && hooks.idleTimeoutMs > 0) {
    up.setTimeout(hooks.idleTimeoutMs, () => { idle = true; cancel.abort() })
  }

  let sinkGone = false
  sink.onClose((completed) => {
    sinkGone = true
    // A complete answer whose caller cut its upload: the rest of the body will not come either.
    if ((!completed || !up.writableEnded) && !up.closed) cancel.abort()
  })

  up.on('response', (raw, flags) => {
    if (finished) return
    const status = Number(raw[':status'])
    const out = forwardable(raw, !reasons.trustMeshHeaders)
    if (ex.upgrade !== undefined && raw[MeshHeader.upgradeStatus] === '101') {
      finished = true
      hooks.onResponse?.(101, out, false)
      sink.upgrade(out, up)
      countBytes(up, (n) => { record.bytesOut += n })
      return
    }
    delete out[MeshHeader.upgradeStatus]
    const end = (flags & h2c.NGHTTP2_FLAG_END_STREAM) !== 0 || bodyless(ex.method, status)
    if (hooks.onResponse?.(status, out, end) === false) {
      finished = true
      cancel.abort()
      return
    }
    if (out['grpc-status'] !== undefined) record.grpcStatus = String(out['grpc-status'])
    sink.respond(status, out, end)
    if (end) { finished = true; up.resume(); return }
    up.pipe(sink.body, { end: false })
    countBytes(up, (n) => { record.bytesOut += n })
  })
  up.on('trailers', (raw) => {
    trailers = forwardable(raw, !reasons.trustMeshHeaders)
    if (trailers['grpc-status'] !== undefined) record.grpcStatus = String(trailers['grpc-status'])
  })
  up.on('end', () => {
    if (finished) return
    // node ends the readable side even when the connection died mid-body; rstCode tells them apart.
    if (up.rstCode !== undefined && up.rstCode !== h2c.NGHTTP2_NO_ERROR) return
    finished = true
    sink.finish(trailers)
  })
  up.on('error', () => { /* handled on close, where rstCode is known */ })
  up.on('close', () => {
    try {
      settle()
    } finally {
      // After the outcome is known, so the caller sees why the attempt ended.
      hooks.onClose?.()
    }
  })
  function settle (): void {
    if (finished) return
    if (!sink.headersSent) {
      if (idle) { fail(ProxyErrors.timeout, `no bytes either way for ${hooks.idleTimeoutMs} ms (idle timeout)`, false); return }
      if (cancel.signal.aborted && sinkGone) return
      const err = (up as unknown as { errored?: NodeJS.ErrnoException }).errored ?? undefined
      const cause = err?.cause as NodeJS.ErrnoException | undefined
      const real = cause?.code !== undefined ? cause : err
      // Refused, timed out, or the handshake failed: the request never left this sidecar.
      const unprocessed = up.rstCode === h2c.NGHTTP2_REFUSED_STREAM || neverConnected(real)
      fail(classify(real, reasons), err?.message ?? `stream reset (code ${up.rstCode})`, unprocessed)
      return
    }
    finished = true
    record.error = idle ? ProxyErrors.timeout.reason : reasons.reset.reason
    sink.abort(up.rstCode === h2c.NGHTTP2_CANCEL ? h2c.NGHTTP2_CANCEL : h2c.NGHTTP2_INTERNAL_ERROR)
  }
  // A cancel from the caller (deadline, retry elsewhere) is silent: the caller answers, not the relay.
  return { cancel: () => { finished = true; if (!up.closed) cancel.abort() } }
}
