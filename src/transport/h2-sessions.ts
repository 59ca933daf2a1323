// One multiplexed HTTP/2 connection per destination (peer sidecar or local h2 app), reused by every
// request; replaced when the peer sends GOAWAY or the connection dies.
import http2, { type ClientHttp2Session } from 'node:http2'
import type { PeerCertificate, SecureContext } from 'node:tls'
import type { Logger } from 'pino'
import type { HostPort } from '../mesh/host-port.ts'
import { tlsReason, type TlsReason } from './tls-errors.ts'
import { spiffeIdOf } from '../identity/svid.ts'
import { ConnectTimeoutError, PeerIdentityMismatch } from '../errors.ts'

/** Flow-control windows big enough that one stream can fill a fast link (64 KiB default is not). */
export const H2_SETTINGS: http2.Settings = Object.freeze({
  initialWindowSize: 4 * 1024 * 1024,
  maxConcurrentStreams: 2 ** 31 - 1,
  maxHeaderListSize: 256 * 1024,
})
export const SESSION_WINDOW = 16 * 1024 * 1024
/** A connection with no stream open for this long is closed (Envoy's idle_timeout). */
export const CONNECTION_IDLE_MS = 10 * 60_000

/** TLS's server check for a peer sidecar: its certificate must carry the SPIFFE ID the table names. */
export function peerIdentityCheck (identity: string | undefined): (name: string, cert: PeerCertificate) => Error | undefined {
  return (_name, cert) => {
    let got: string
    try { got = spiffeIdOf(cert) } catch (err) { return new PeerIdentityMismatch(identity ?? '(none)', (err as Error).message) }
    return identity !== undefined && got === identity ? undefined : new PeerIdentityMismatch(identity ?? '(none)', got)
  }
}

export class H2Sessions {
  readonly #sessions = new Map<string, ClientHttp2Session>()
  readonly #log: Logger
  readonly #connectTimeout: number
  readonly #tls: (() => SecureContext | undefined) | undefined
  readonly #onTlsFailure: (reason: TlsReason) => void

  /** With `tls`, connections are TLS 1.3 with this sidecar's current certificate, and the peer must prove the identity asked for. */
  constructor (log: Logger, connectTimeout: number, tls?: () => SecureContext | undefined, onTlsFailure: (reason: TlsReason) => void = () => {}) {
    this.#log = log
    this.#connectTimeout = connectTimeout
    this.#tls = tls
    this.#onTlsFailure = onTlsFailure
  }

  get size (): number { return this.#sessions.size }

  /** The connection to `target`, opened if needed within `connectTimeout` ms (default: the proxy's). */
  get (target: HostPort, connectTimeout: number = this.#connectTimeout, identity?: string): ClientHttp2Session {
    const key = this.#tls === undefined || identity === undefined ? `${target.host}:${target.port}` : `${target.host}:${target.port}|${identity}`
    const existing = this.#sessions.get(key)
    if (existing !== undefined && !existing.closed && !existing.destroyed) return existing
    const host = target.host.includes(':') ? `[${target.host}]` : target.host
    const common = { settings: H2_SETTINGS, maxSessionMemory: 64, maxOutstandingPings: 4 }
    const session = this.#tls === undefined
      ? http2.connect(`http://${host}:${target.port}`, common)
      : http2.connect(`https://${host}:${target.port}`, {
        ...common,
        secureContext: this.#tls(),
        minVersion: 'TLSv1.3',
        ALPNProtocols: ['h2'],
        checkServerIdentity: peerIdentityCheck(identity),
      })
    this.#sessions.set(key, session)
    const forget = (): void => { if (this.#sessions.get(key) === session) this.#sessions.delete(key) }
    const timer = setTimeout(() => session.destroy(new ConnectTimeoutError(key, connectTimeout)), connectTimeout)
    session.once('connect', () => {
      clearTimeout(timer)
      session.setLocalWindowSize(SESSION_WINDOW)
    })
    // Idle = no stream open (Envoy's idle_timeout), not "no frame": a peer's keepalive PINGs must not
    // keep an unused connection open (the inbound side PINGs quiet connections, transport/h2-server.ts).
    let open = 0
    let idle: NodeJS.Timeout | undefined
    const armIdle = (): void => { idle = setTimeout(() => { forget(); session.close() }, CONNECTION_IDLE_MS).unref() }
    const request = session.request.bind(session)
    session.request = (...args: Parameters<ClientHttp2Session['request']>) => {
      const stream = request(...args)
      open++
      clearTimeout(idle)
      stream.once('close', () => { if (--open === 0 && !session.closed) armIdle() })
      return stream
    }
    armIdle()
    // After GOAWAY, streams already accepted finish on this session; new ones go to a new one.
    session.once('goaway', () => forget())
    session.once('close', () => { clearTimeout(timer); clearTimeout(idle); forget() })
    session.on('error', (err: NodeJS.ErrnoException) => {
      const reason = tlsReason(err)
      if (reason !== undefined) this.#onTlsFailure(reason)
      this.#log.debug({ err: { message: err.message, code: err.code }, target: key }, 'h2 session error')
    })
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
