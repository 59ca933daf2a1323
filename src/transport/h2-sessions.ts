// One multiplexed HTTP/2 connection per destination (peer sidecar or local h2 app), reused by every
// request; replaced when the peer sends GOAWAY or the connection dies.
import http2, { type ClientHttp2Session } from 'node:http2'
import type { Logger } from 'pino'
import type { HostPort } from '../config/env.ts'

/** Flow-control windows big enough that one stream can fill a fast link (64 KiB default is not). */
export const H2_SETTINGS: http2.Settings = Object.freeze({
  initialWindowSize: 4 * 1024 * 1024,
  maxConcurrentStreams: 2 ** 31 - 1,
  maxHeaderListSize: 256 * 1024,
})
export const SESSION_WINDOW = 16 * 1024 * 1024
/** A connection with no streams and no frames for this long is closed (Envoy's idle_timeout idea). */
export const CONNECTION_IDLE_MS = 10 * 60_000

export class ConnectTimeoutError extends Error {
  readonly code = 'ETIMEDOUT'
  constructor (target: string, ms: number) { super(`no connection to ${target} within ${ms} ms`) }
}

export class H2Sessions {
  readonly #sessions = new Map<string, ClientHttp2Session>()
  readonly #log: Logger
  readonly #connectTimeout: number

  constructor (log: Logger, connectTimeout: number) {
    this.#log = log
    this.#connectTimeout = connectTimeout
  }

  get size (): number { return this.#sessions.size }

  /** The connection to `target`, opened if needed within `connectTimeout` ms (default: the proxy's). */
  get (target: HostPort, connectTimeout: number = this.#connectTimeout): ClientHttp2Session {
    const key = `${target.host}:${target.port}`
    const existing = this.#sessions.get(key)
    if (existing !== undefined && !existing.closed && !existing.destroyed) return existing
    const host = target.host.includes(':') ? `[${target.host}]` : target.host
    const session = http2.connect(`http://${host}:${target.port}`, {
      settings: H2_SETTINGS,
      maxSessionMemory: 64,
      maxOutstandingPings: 4,
    })
    this.#sessions.set(key, session)
    const forget = (): void => { if (this.#sessions.get(key) === session) this.#sessions.delete(key) }
    const timer = setTimeout(() => session.destroy(new ConnectTimeoutError(key, connectTimeout)), connectTimeout)
    session.once('connect', () => {
      clearTimeout(timer)
      session.setLocalWindowSize(SESSION_WINDOW)
    })
    session.setTimeout(CONNECTION_IDLE_MS, () => { forget(); session.close() })
    // After GOAWAY, streams already accepted finish on this session; new ones go to a new one.
    session.once('goaway', () => forget())
    session.once('close', () => { clearTimeout(timer); forget() })
    session.on('error', (err) => this.#log.debug({ err: { message: err.message, code: (err as NodeJS.ErrnoException).code }, target: key }, 'h2 session error'))
    return session
  }

  /** Graceful: GOAWAY-less close that lets open streams finish. */
  async close (): Promise<void> {
    await Promise.all([...this.#sessions.values()].map((s) => new Promise<void>((resolve) => {
      if (s.closed || s.destroyed) { resolve(); return }
      s.close(() => resolve())
    })))
  }

  destroy (): void {
    for (const s of this.#sessions.values()) s.destroy()
    this.#sessions.clear()
  }
}
