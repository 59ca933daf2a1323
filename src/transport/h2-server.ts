// What every HTTP/2 server of the sidecar (outbound from the app, inbound h2c, inbound mTLS from
// peers) bounds per client connection: concurrent streams, time with no stream open, time to go
// once it was told to go, and a quiet connection's liveness (Envoy's max_concurrent_streams,
// idle_timeout, drain_timeout and connection_keepalive).
import http2 from 'node:http2'
import { H2_SETTINGS } from './h2-sessions.ts'
import type { ProxyConfig } from '../config/proxy-config.ts'
import type { ProxyMetrics } from '../telemetry/metrics.ts'

export interface H2ServerLimits {
  /** SETTINGS_MAX_CONCURRENT_STREAMS; node answers a stream beyond it with RST_STREAM REFUSED_STREAM. */
  readonly maxConcurrentStreams: number
  /** A connection with no open stream for this long is sent GOAWAY and closed (0: never). */
  readonly idleTimeoutMs: number
  /** After the sidecar's GOAWAY, or a PING left unanswered, the connection is destroyed this much later. */
  readonly drainTimeoutMs: number
  /** A connection with no frame either way for this long is sent a PING (0: never). */
  readonly pingIntervalMs: number
  /**
   * Streams the client may cancel (RST_STREAM CANCEL before a response) per RESET_WINDOW_MS; one
   * more, when they are also over half of its streams in that window, and the connection is sent
   * GOAWAY ENHANCE_YOUR_CALM and closed (rapid reset, CVE-2023-44487).
   */
  readonly maxStreamResets: number
}

/** The window of maxStreamResets. */
export const RESET_WINDOW_MS = 10_000

/** Why a downstream connection was ended by a timer: no stream for the idle timeout, drain after GOAWAY, PING unanswered. */
export type H2TimeoutKind = 'h2-idle' | 'h2-drain' | 'h2-ping'

export function h2ServerOptions (limits: H2ServerLimits): http2.ServerOptions {
  return {
    settings: { ...H2_SETTINGS, maxConcurrentStreams: limits.maxConcurrentStreams },
    maxSessionMemory: 64,
    // Streams refused (beyond the limit) and invalid frames a connection may cause before node ends it.
    maxSessionRejectedStreams: 100,
    maxSessionInvalidFrames: 100,
    // nghttp2's own rapid-reset limit (node's defaults: 1000 at once, 33/s) only as a backstop:
    // above the sidecar's budget, which closes the connection itself (nghttp2's GOAWAY leaves the
    // socket to the PING probe) and counts it.
    streamResetBurst: 4 * limits.maxStreamResets + 1000,
    streamResetRate: Math.max(33, Math.ceil(4 * limits.maxStreamResets * 1000 / RESET_WINDOW_MS)),
  }
}

/**
 * Puts the timers on every session of `server`. node's http2 sends GOAWAY itself on a connection
 * error (malformed frame, oversized header block, flood) and then stops reading without telling
 * JavaScript, and the socket stays open: such a connection never answers a PING again, so the
 * PING probe is what finds it (and a peer that vanished without a FIN).
 */
export function guardH2Sessions (server: http2.Http2Server, limits: H2ServerLimits, onTimeout: (kind: H2TimeoutKind) => void, onResetFlood: () => void = () => {}): void {
  server.on('session', (session: http2.ServerHttp2Session) => {
    let open = 0
    let idle: NodeJS.Timeout | undefined
    let drain: NodeJS.Timeout | undefined
    let probe: NodeJS.Timeout | undefined
    const end = (kind: H2TimeoutKind): void => {
      if (session.destroyed) return
      onTimeout(kind)
      // The http2 socket proxy forbids destroy(); destroying the session ends its socket too.
      session.destroy()
    }
    const startDrain = (): void => {
      drain ??= setTimeout(() => end('h2-drain'), limits.drainTimeoutMs).unref()
    }
    const armIdle = (): void => {
      clearTimeout(idle)
      if (limits.idleTimeoutMs <= 0) return
      idle = setTimeout(() => {
        if (open > 0 || session.destroyed) return
        onTimeout('h2-idle')
        session.close()
        startDrain()
      }, limits.idleTimeoutMs).unref()
    }
    // Streams opened and cancelled in the current window. A busy client that cancels a few percent
    // of many streams (gRPC deadlines) is no flood: only cancels beyond the budget that are also
    // most of its streams are (as Envoy's premature-reset check).
    let streams = 0
    let resets = 0
    let windowStart = 0
    const window = (): void => {
      const now = Date.now()
      if (now - windowStart >= RESET_WINDOW_MS) { windowStart = now; streams = 0; resets = 0 }
    }
    const cancelled = (stream: http2.ServerHttp2Stream): void => {
      if (stream.rstCode !== http2.constants.NGHTTP2_CANCEL || stream.headersSent || session.destroyed) return
      window()
      if (++resets <= limits.maxStreamResets || resets * 2 <= streams) return
      onResetFlood()
      // destroy(undefined, code) would send NO_ERROR (undefined takes destroy's default, NO_ERROR,
      // as the code) and destroy(code) emits an 'error'; and a destroy right after goaway() can drop
      // the GOAWAY before nghttp2 writes it. So: the GOAWAY, then a close that flushes it and ends the
      // session once its (cancelled) streams are gone, and the drain timer as the backstop.
      session.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM)
      session.close()
      startDrain()
    }
    session.on('stream', (stream: http2.ServerHttp2Stream) => {
      window()
      streams++
      open++
      clearTimeout(idle)
      stream.once('close', () => {
        cancelled(stream)
        if (--open === 0 && !session.closed) armIdle()
      })
    })
    armIdle()
    if (limits.pingIntervalMs > 0) {
      session.setTimeout(limits.pingIntervalMs, () => {
        if (probe !== undefined || session.destroyed) return
        probe = setTimeout(() => end('h2-ping'), limits.drainTimeoutMs).unref()
        const answered = (err: Error | null): void => {
          if (err !== null) return
          clearTimeout(probe)
          probe = undefined
        }
        try { session.ping(answered) } catch { end('h2-ping') }
      })
    }
    session.once('close', () => { clearTimeout(idle); clearTimeout(drain); clearTimeout(probe) })
  })
}

/** An h2c server (or the h2 half of the mTLS listener, `peer`) with the configured limits, timeouts counted. */
export function createDownstreamH2Server (ctx: { readonly config: ProxyConfig, readonly metrics: ProxyMetrics }, direction: 'inbound' | 'outbound', peer = false): http2.Http2Server {
  const c = ctx.config.h2Downstream
  const limits: H2ServerLimits = {
    maxConcurrentStreams: peer ? c.peerMaxConcurrentStreams : c.maxConcurrentStreams,
    idleTimeoutMs: c.idleTimeout,
    drainTimeoutMs: c.drainTimeout,
    pingIntervalMs: c.pingInterval,
    // A peer sidecar carries the cancellations of all its clients on one connection.
    maxStreamResets: peer ? 10 * c.maxStreamResets : c.maxStreamResets,
  }
  const server = http2.createServer(h2ServerOptions(limits))
  guardH2Sessions(server, limits, (kind) => ctx.metrics.downstreamTimeouts.inc({ direction, kind }), () => ctx.metrics.h2ResetFloods.inc({ direction }))
  return server
}
