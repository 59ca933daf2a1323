// Which protocol the local app speaks on an `auto` app port: asked once per port with an HTTP/2
// prior-knowledge preface, remembered, and asked again when a connection shows it no longer holds.
//
// An HTTP/2 server sends its SETTINGS frame as soon as a connection opens (RFC 9113 §3.4), so
// SETTINGS coming back is proof of h2. An HTTP/1.1 server reads the preface as a request line
// (`PRI * HTTP/2.0`) it cannot serve and answers 400/505, or closes: anything but SETTINGS is
// HTTP/1.1. Refused or silent means the app cannot be asked now; nothing is remembered then.
import net from 'node:net'
import type { ClientHttp2Session } from 'node:http2'
import type { Logger } from 'pino'
import { ConnectTimeoutError } from '../errors.ts'

export type AppWire = 'http1' | 'http2'

export interface Detection {
  readonly protocol: AppWire
  /** What the app did that decided it, for the log line. */
  readonly evidence: string
}

/** The client connection preface and an empty SETTINGS frame (RFC 9113 §3.4). */
const PREFACE = Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'), Buffer.from([0, 0, 0, 0x04, 0, 0, 0, 0, 0])])
/** GOAWAY, last stream 0, NO_ERROR: the h2 app sees a polite goodbye, not a broken connection. */
const GOAWAY = Buffer.from([0, 0, 8, 0x07, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
const FRAME_SETTINGS = 0x04
const FLAG_ACK = 0x01

/** Connected, but the app answered nothing at all in time. Counts as a timeout (504 `connect timeout`). */
export class ProbeTimeoutError extends Error {
  readonly code = 'ETIMEDOUT'
  constructor (target: string, ms: number) {
    super(`the app on ${target} accepted a connection but answered an HTTP/2 preface with neither SETTINGS nor HTTP/1.1 within ${ms} ms; declare the port's protocol (appPorts: {port, protocol: http1|http2})`)
  }
}

/**
 * Opens one connection to the app, sends the HTTP/2 preface and reads what comes back. Resolves
 * with the protocol; rejects when the app could not be asked (refused, no connection or no answer
 * within `timeoutMs`), with an error `classify` maps (ECONNREFUSED, ETIMEDOUT).
 */
export function probeAppProtocol (port: number, timeoutMs: number, host = '127.0.0.1'): Promise<Detection> {
  const target = `${host}:${port}`
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port })
    let connected = false
    let settled = false
    let seen = Buffer.alloc(0)
    const timer = setTimeout(() => fail(connected ? new ProbeTimeoutError(target, timeoutMs) : new ConnectTimeoutError(target, timeoutMs)), timeoutMs)

    function finish (): boolean {
      if (settled) return false
      settled = true
      clearTimeout(timer)
      return true
    }
    function fail (err: Error): void {
      if (!finish()) return
      socket.destroy()
      reject(err)
    }
    function found (protocol: AppWire, evidence: string): void {
      if (!finish()) return
      if (protocol === 'http2' && socket.writable) {
        socket.end(GOAWAY)
        // The app closes its side on GOAWAY; one that does not is not waited for long.
        socket.setTimeout(timeoutMs, () => socket.destroy())
      } else socket.destroy()
      resolve({ protocol, evidence })
    }
    function decide (ended: boolean, err?: NodeJS.ErrnoException): void {
      if (settled) return
      if (seen.length >= 9 && seen[3] === FRAME_SETTINGS && (seen[4] & FLAG_ACK) === 0 && (seen.readUInt32BE(5) & 0x7fffffff) === 0) {
        found('http2', 'the app answered the HTTP/2 preface with a SETTINGS frame')
        return
      }
      const statusLine = seen.length >= 5 && seen.subarray(0, 5).toString('latin1') === 'HTTP/'
      const eol = seen.indexOf('\r\n')
      if (statusLine && (eol > 0 || ended || seen.length >= 64)) {
        found('http1', `the app answered the HTTP/2 preface with "${seen.subarray(0, eol > 0 ? eol : 64).toString('latin1')}"`)
        return
      }
      if (!statusLine && seen.length >= 9) {
        found('http1', `the app answered the HTTP/2 preface with ${seen.length} bytes that are not an HTTP/2 SETTINGS frame`)
        return
      }
      if (ended) {
        const how = err?.code !== undefined ? `reset the connection (${err.code})` : 'closed the connection'
        found('http1', seen.length === 0 ? `the app ${how} on the HTTP/2 preface` : `the app ${how} after ${seen.length} bytes that are not an HTTP/2 SETTINGS frame`)
      }
    }

    socket.once('connect', () => {
      connected = true
      socket.write(PREFACE)
    })
    socket.on('data', (chunk: Buffer) => {
      seen = Buffer.concat([seen, chunk]).subarray(0, 64)
      decide(false)
    })
    socket.once('end', () => decide(true))
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (connected) decide(true, err)
      else fail(err)
    })
    socket.once('close', () => decide(true))
  })
}

type Probe = (port: number, timeoutMs: number) => Promise<Detection>

/** What each `auto` app port speaks: one probe per port, shared by the requests that wait for it. */
export class AppProtocols {
  readonly #known = new Map<number, Detection>()
  readonly #pending = new Map<number, Promise<Detection>>()
  readonly #watched = new WeakSet<ClientHttp2Session>()
  readonly #log: Logger
  readonly #timeoutMs: number
  readonly #probe: Probe

  constructor (log: Logger, timeoutMs: number, probe: Probe = probeAppProtocol) {
    this.#log = log
    this.#timeoutMs = timeoutMs
    this.#probe = probe
  }

  /** The remembered protocol of `port`, if any: a known port is routed without waiting. */
  known (port: number): AppWire | undefined { return this.#known.get(port)?.protocol }

  /** Detects `port`'s protocol, or joins the detection in flight. Rejects (nothing remembered) when the app cannot be asked now. */
  detect (port: number): Promise<Detection> {
    const known = this.#known.get(port)
    if (known !== undefined) return Promise.resolve(known)
    let pending = this.#pending.get(port)
    if (pending === undefined) {
      pending = this.#probe(port, this.#timeoutMs).then((d) => {
        this.#known.set(port, d)
        this.#log.info({ port, protocol: d.protocol, evidence: d.evidence }, 'app protocol detected')
        return d
      }, (err: NodeJS.ErrnoException) => {
        this.#log.debug({ port, err: { message: err.message, code: err.code } }, 'app protocol not detected; asking again on the next request')
        throw err
      }).finally(() => { this.#pending.delete(port) })
      this.#pending.set(port, pending)
    }
    return pending
  }

  /** Starts detecting `ports` ahead of their first request; failures are left for that request to meet. */
  warm (ports: readonly number[]): void {
    for (const port of ports) this.detect(port).catch(() => {})
  }

  /** What was remembered for `port` no longer holds: the next request detects again. */
  forget (port: number, why: string): void {
    const was = this.#known.get(port)
    if (was === undefined) return
    this.#known.delete(port)
    this.#log.info({ port, was: was.protocol, why }, 'app protocol forgotten; detecting again on the next request')
  }

  /**
   * Watches an h2 connection to a detected port: one that ends before the app's SETTINGS arrived
   * found no HTTP/2 server there (the app was replaced, or is down), so the port is detected again.
   */
  watch (port: number, session: ClientHttp2Session): void {
    if (this.#watched.has(session)) return
    this.#watched.add(session)
    let settings = false
    session.once('remoteSettings', () => { settings = true })
    session.once('close', () => { if (!settings) this.forget(port, 'the HTTP/2 connection to the app ended before the app sent SETTINGS') })
  }
}
