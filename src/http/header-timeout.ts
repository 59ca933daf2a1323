// The HTTP/1.1 request-header timeout (REMORA_REQUEST_HEADERS_TIMEOUT) on servers that never listen:
// the detection listener hands them their connections with emit('connection').
import type http from 'node:http'
import type { Duplex } from 'node:stream'
import type { ProxyMetrics } from '../telemetry/metrics.ts'
import { statusLine } from './status-line.ts'

/**
 * node's own header timeout: each connection's parser notes when a request's first byte arrived
 * (and when the connection reached the server); a connections check every tenth of the timeout (at
 * most every second, at least every 50 ms) raises 'clientError' with ERR_HTTP_REQUEST_TIMEOUT for a
 * header still incomplete after `timeoutMs`. A kept-alive connection waiting for its next request
 * is not checked (keepAliveTimeout closes it). 0: no limit.
 */
export function headersTimeoutOptions (timeoutMs: number): Pick<http.ServerOptions, 'headersTimeout' | 'connectionsCheckingInterval'> {
  return { headersTimeout: timeoutMs, connectionsCheckingInterval: Math.min(1_000, Math.max(50, Math.floor(timeoutMs / 10))) }
}

/**
 * Starts that check on a server that will never listen(). node starts it (and starts tracking
 * connections at all) on the server's 'listening' event only (lib/_http_server.js,
 * setupConnectionsTracking), so without this `headersTimeout` never fires. Call it before the
 * server gets its first connection: earlier ones are not tracked.
 */
export function startHeadersTimeout (server: http.Server): void {
  if (server.headersTimeout > 0) server.emit('listening')
}

export const isHeadersTimeout = (err: NodeJS.ErrnoException): boolean => err.code === 'ERR_HTTP_REQUEST_TIMEOUT'

const REQUEST_TIMEOUT = statusLine(408, { 'content-length': '0', connection: 'close' })

/**
 * A request header did not arrive in time: counted, answered 408 and the connection closed (as node
 * does itself); only closed when a response is still being written on the connection (the late
 * header is a pipelined request's) or the socket cannot be written.
 */
export function headersTimedOut (socket: Duplex, metrics: ProxyMetrics, direction: 'inbound' | 'outbound'): void {
  metrics.downstreamTimeouts.inc({ direction, kind: 'headers' })
  // node's server keeps the response in progress on the socket as _httpMessage (it checks it the same way).
  const responding = (socket as { _httpMessage?: unknown })._httpMessage != null
  if (!socket.writable || responding) { socket.destroy(); return }
  // A client that reads nothing cannot hold the socket open: closed once written, or after a second.
  const timer = setTimeout(() => socket.destroy(), 1_000).unref()
  socket.end(REQUEST_TIMEOUT, () => { clearTimeout(timer); socket.destroy() })
}
