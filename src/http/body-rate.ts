// A request body must keep coming: a slow-body client (a byte a second on a 1 MiB Content-Length)
// otherwise holds an admission slot and an app connection for as long as it likes.
import type { Readable } from 'node:stream'
import type { BodyRateLimit, ProxyConfig } from '../config/proxy-config.ts'
import type { Direction } from '../telemetry/access-log.ts'
import type { ProxyMetrics } from '../telemetry/metrics.ts'
import { ProxyErrors } from '../errors.ts'
import type { Exchange } from './exchange.ts'
import type { ResponseSink } from './response-sink.ts'

/**
 * Watches `body` from its first read (a request waiting in a queue is not yet reading): it has
 * `timeoutMs`, then one second more per `minBytesPerSecond` bytes received (Apache mod_reqtimeout's
 * model; nginx's client_body_timeout bounds only the gap between reads, which a byte a minute
 * satisfies). Calls `expired` once when the body falls behind before its end; the watch stops at the
 * body's end, its error, or `stop()` (the caller gone). One timer, re-armed only when it fires.
 */
export function watchBodyRate (body: Readable, limit: BodyRateLimit, expired: (detail: string) => void): () => void {
  if (limit.timeoutMs <= 0) return () => {}
  let received = 0
  let started = 0
  let timer: NodeJS.Timeout | undefined
  let over = false
  const stop = (): void => {
    over = true
    clearTimeout(timer)
    body.off('resume', start)
  }
  const deadline = (): number => started + limit.timeoutMs + (limit.minBytesPerSecond > 0 ? received * 1000 / limit.minBytesPerSecond : 0)
  const check = (): void => {
    if (over) return
    const left = deadline() - performance.now()
    if (left > 0) { timer = setTimeout(check, left); return }
    stop()
    const took = Math.round(performance.now() - started)
    expired(limit.minBytesPerSecond > 0
      ? `${received} bytes of the request body in ${took} ms: below ${limit.minBytesPerSecond} bytes/s after the first ${limit.timeoutMs} ms`
      : `the request body was not whole after ${limit.timeoutMs} ms (${received} bytes)`)
  }
  function start (): void {
    if (over || started > 0) return
    started = performance.now()
    // Counted from here, like count-bytes.ts: a 'data' listener earlier would start the flow itself.
    body.on('data', (chunk: Buffer) => { received += chunk.length })
    timer = setTimeout(check, limit.timeoutMs)
  }
  body.once('end', stop)
  body.once('close', stop)
  if (body.readableFlowing === true) start()
  else body.once('resume', start)
  return stop
}

/**
 * The rule on one exchange from the app or a client outside the mesh. gRPC is exempt (a client
 * stream may rightly send a message a minute; its deadline bounds it), and so are peer sidecars
 * (their own outbound listener held the body to the rule). Falling behind is counted
 * (`remora_downstream_timeouts_total{kind="body"}`), logged as `request body timeout`, and the
 * caller is answered 408 or reset.
 */
export function guardRequestBody (ctx: { readonly config: ProxyConfig, readonly metrics: ProxyMetrics }, direction: Direction, ex: Exchange, sink: ResponseSink): void {
  const limit = ctx.config.requestBody
  if (ex.body === null || ex.grpc || limit.timeoutMs <= 0) return
  const stop = watchBodyRate(ex.body, limit, (detail) => {
    ctx.metrics.downstreamTimeouts.inc({ direction, kind: 'body' })
    ex.record.error = ProxyErrors.bodyTimeout.reason
    sink.expire(ProxyErrors.bodyTimeout, detail)
  })
  sink.onClose(stop)
}
