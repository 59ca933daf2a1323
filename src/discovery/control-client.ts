// The sidecar's discovery client: one HTTP/2 connection to the control plane, a watch per authority
// the app actually calls (opened on first use, closed when idle), and the last table kept when it is away.
import http2, { type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2'
import type { ConnectionOptions } from 'node:tls'
import type { Logger } from 'pino'
import type { HostPort } from '../mesh/host-port.ts'
import { backoffMs } from '../resilience/backoff.ts'
import type { ProxyMetrics } from '../telemetry/metrics.ts'
import { normalizeAuthority, type EndpointTable } from './endpoint-table.ts'
import type { Service } from '../mesh/service.ts'
import { WATCH_PATH, applyDelta, decode, type WatchMessage } from './wire.ts'
import { WORKLOAD_HEADER } from '../identity/certificate-api.ts'
import { DiscoveryUnavailable } from '../errors.ts'

export interface DiscoveryOptions {
  readonly address: HostPort
  readonly workload: string | undefined
  /** A watch not used by any request for this long is closed and its service leaves the table. */
  readonly idleMs: number
  /** How long a request for a not-yet-resolved authority waits for the control plane's first answer. */
  readonly timeoutMs: number
  readonly connectTimeoutMs: number
  readonly table: EndpointTable
  readonly log: Logger
  readonly metrics: ProxyMetrics
  /** With mTLS: TLS options (this sidecar's certificate, the trust anchors) for each new connection. */
  readonly tls?: () => ConnectionOptions
}

interface Waiter { resolve: (s: Service | undefined) => void, reject: (e: Error) => void, timer: NodeJS.Timeout }

interface Watch {
  readonly authority: string
  stream: ClientHttp2Stream | undefined
  /** Has the control plane answered for this authority (snapshot or absent) at least once? */
  known: boolean
  key: string | undefined
  service: Service | undefined
  version: number
  lastUsed: number
  buffered: string
  waiters: Waiter[]
}

const BACKOFF_BASE_MS = 200
const BACKOFF_MAX_MS = 15_000
const PING_EVERY_MS = 10_000

export class DiscoveryClient {
  readonly #o: DiscoveryOptions
  readonly #source: string
  readonly #watches = new Map<string, Watch>()
  #session: ClientHttp2Session | undefined
  #connected = false
  /** Between a lost connection and the next attempt: unknown authorities fail fast. */
  #backingOff = false
  #failures = 0
  #everSynced = false
  #stopped = false
  #retry: NodeJS.Timeout | undefined
  readonly #sweep: NodeJS.Timeout
  readonly #ping: NodeJS.Timeout

  constructor (options: DiscoveryOptions) {
    this.#o = options
    this.#source = `control:${options.address.host}:${options.address.port}`
    this.#sweep = setInterval(() => this.#evictIdle(), Math.max(1000, Math.min(60_000, options.idleMs / 4))).unref()
    this.#ping = setInterval(() => this.#keepalive(), PING_EVERY_MS).unref()
  }

  get source (): string { return this.#source }
  /** Connected to the control plane at least once (what /ready waits for). */
  get synced (): boolean { return this.#everSynced }
  get connected (): boolean { return this.#connected }

  start (): void { this.#connect() }

  stop (): void {
    this.#stopped = true
    clearTimeout(this.#retry)
    clearInterval(this.#sweep)
    clearInterval(this.#ping)
    for (const w of this.#watches.values()) this.#settle(w, new DiscoveryUnavailable('the sidecar is stopping'))
    this.#session?.destroy()
  }

  /**
   * The service for an authority: at once when this sidecar already watches it (even while the
   * control plane is away), else a promise of the control plane's first answer.
   */
  resolve (authority: string): Service | undefined | Promise<Service | undefined> {
    const a = normalizeAuthority(authority)
    const watch = this.#watches.get(a)
    if (watch?.known === true) {
      watch.lastUsed = Date.now()
      return watch.service
    }
    if (this.#backingOff || this.#stopped) {
      return Promise.reject(new DiscoveryUnavailable(`control plane ${this.#o.address.host}:${this.#o.address.port} is unreachable and ${a} was never resolved`))
    }
    const w = watch ?? this.#watch(a)
    w.lastUsed = Date.now()
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          w.waiters = w.waiters.filter((x) => x !== waiter)
          reject(new DiscoveryUnavailable(`no answer from the control plane for ${a} within ${this.#o.timeoutMs} ms`))
        }, this.#o.timeoutMs),
      }
      w.waiters.push(waiter)
    })
  }

  #watch (authority: string): Watch {
    const w: Watch = { authority, stream: undefined, known: false, key: undefined, service: undefined, version: 0, lastUsed: Date.now(), buffered: '', waiters: [] }
    this.#watches.set(authority, w)
    this.#o.metrics.discoveryWatches.set(this.#watches.size)
    if (this.#connected) this.#subscribe(w)
    return w
  }

  #connect (): void {
    if (this.#stopped) return
    this.#backingOff = false
    const { host, port } = this.#o.address
    const authority = `${host.includes(':') ? `[${host}]` : host}:${port}`
    const session = this.#o.tls === undefined ? http2.connect(`http://${authority}`) : http2.connect(`https://${authority}`, this.#o.tls())
    this.#session = session
    const timer = setTimeout(() => session.destroy(new Error(`no connection within ${this.#o.connectTimeoutMs} ms`)), this.#o.connectTimeoutMs)
    session.once('connect', () => {
      clearTimeout(timer)
      this.#connected = true
      this.#o.metrics.discoveryConnected.set(1)
      if (this.#failures > 0 || this.#everSynced) this.#o.log.info({ controlPlane: `${host}:${port}`, watches: this.#watches.size }, 'discovery connected; resubscribing')
      this.#failures = 0
      this.#everSynced = true
      this.#o.table.touch(this.#source)
      for (const w of this.#watches.values()) this.#subscribe(w)
    })
    session.on('error', (err: NodeJS.ErrnoException) => {
      if (this.#failures === 0) this.#o.log.warn({ controlPlane: `${host}:${port}`, err: err.code ?? err.message }, 'discovery connection failed; serving from the last table, retrying with backoff')
    })
    session.once('close', () => {
      clearTimeout(timer)
      if (this.#session === session) this.#lost()
    })
    session.on('goaway', () => { session.close() })
  }

  #lost (): void {
    const wasConnected = this.#connected
    this.#connected = false
    this.#session = undefined
    this.#o.metrics.discoveryConnected.set(0)
    if (wasConnected) this.#o.metrics.discoveryReconnects.inc()
    for (const w of this.#watches.values()) {
      w.stream = undefined
      w.buffered = ''
      if (!w.known) this.#settle(w, new DiscoveryUnavailable('lost the connection to the control plane'))
    }
    if (this.#stopped) return
    this.#failures++
    this.#backingOff = true
    const delay = Math.max(50, backoffMs(this.#failures, BACKOFF_BASE_MS, BACKOFF_MAX_MS))
    this.#retry = setTimeout(() => this.#connect(), delay)
  }

  #subscribe (w: Watch): void {
    const session = this.#session
    if (session === undefined || session.closed || session.destroyed) return
    const headers: http2.OutgoingHttpHeaders = { ':method': 'GET', ':path': `${WATCH_PATH}?authority=${encodeURIComponent(w.authority)}` }
    if (this.#o.workload !== undefined) headers[WORKLOAD_HEADER] = this.#o.workload
    let stream: ClientHttp2Stream
    try {
      stream = session.request(headers, { endStream: true })
    } catch (err) {
      // The session is closing (GOAWAY, or destroyed between the check above and here): its 'close'
      // reconnects and re-subscribes every watch, this one included.
      this.#o.log.debug({ authority: w.authority, err: (err as Error).message }, 'watch not sent: the control plane connection is closing')
      return
    }
    w.stream = stream
    w.buffered = ''
    stream.setEncoding('utf8')
    let ok = false
    stream.on('response', (h) => {
      const status = Number(h[':status'])
      if (status === 200) { ok = true; return }
      let body = ''
      stream.on('data', (chunk: string) => { body += chunk })
      stream.on('end', () => {
        this.#o.log.warn({ authority: w.authority, status, body: body.trim().slice(0, 300) }, 'discovery watch refused')
        // 4xx: the control plane will never know this authority, so it resolves to nothing.
        if (status >= 400 && status < 500) this.#apply(w, { type: 'absent', version: 0, authority: w.authority })
      })
    })
    stream.on('data', (chunk: string) => {
      if (!ok) return
      w.buffered += chunk
      let nl: number
      while ((nl = w.buffered.indexOf('\n')) >= 0) {
        const line = w.buffered.slice(0, nl)
        w.buffered = w.buffered.slice(nl + 1)
        if (line.trim() === '' || w.stream !== stream) continue
        let m: WatchMessage
        try {
          m = decode(line)
        } catch (err) {
          this.#o.log.error({ authority: w.authority, err: (err as Error).message }, 'discovery message not understood; resubscribing')
          this.#restart(w, stream)
          return
        }
        this.#apply(w, m)
      }
    })
    stream.on('error', () => {})
    stream.on('close', () => {
      if (w.stream !== stream) return
      w.stream = undefined
      // The control plane ended this watch (slow reader, restart): watch again if the connection lives.
      if (this.#connected && this.#watches.get(w.authority) === w) setTimeout(() => { if (w.stream === undefined && this.#connected) this.#subscribe(w) }, 100 + Math.random() * 400).unref()
    })
  }

  #restart (w: Watch, stream: ClientHttp2Stream): void {
    w.stream = undefined
    stream.close(http2.constants.NGHTTP2_CANCEL)
    this.#subscribe(w)
  }

  #apply (w: Watch, m: WatchMessage): void {
    this.#o.metrics.discoveryUpdates.inc({ type: m.type })
    if (m.type === 'delta') {
      if (w.service === undefined || m.previous !== w.version) {
        this.#o.log.warn({ authority: w.authority, have: w.version, previous: m.previous }, 'discovery delta out of order; resubscribing for a snapshot')
        if (w.stream !== undefined) this.#restart(w, w.stream)
        return
      }
      this.#setService(w, applyDelta(w.service, m), m.version)
    } else if (m.type === 'snapshot') {
      this.#setService(w, m.service, m.version)
    } else {
      const key = w.key
      w.key = undefined
      w.service = undefined
      w.version = m.version
      if (key !== undefined && !this.#keyInUse(key)) this.#o.table.remove(key, this.#source)
    }
    w.known = true
    this.#settle(w, undefined)
  }

  #setService (w: Watch, service: Service, version: number): void {
    w.service = service
    w.version = version
    w.key = service.key
    this.#o.table.upsert(service, this.#source, version)
  }

  #keyInUse (key: string): boolean {
    for (const w of this.#watches.values()) if (w.key === key) return true
    return false
  }

  #settle (w: Watch, err: Error | undefined): void {
    for (const waiter of w.waiters.splice(0)) {
      clearTimeout(waiter.timer)
      if (err === undefined) waiter.resolve(w.service)
      else waiter.reject(err)
    }
  }

  #evictIdle (): void {
    const cutoff = Date.now() - this.#o.idleMs
    for (const w of [...this.#watches.values()]) {
      if (w.lastUsed > cutoff || w.waiters.length > 0) continue
      this.#watches.delete(w.authority)
      w.stream?.close(http2.constants.NGHTTP2_CANCEL)
      w.stream = undefined
      if (w.key !== undefined && !this.#keyInUse(w.key)) this.#o.table.remove(w.key, this.#source)
      this.#o.log.debug({ authority: w.authority }, 'discovery watch closed: idle')
    }
    this.#o.metrics.discoveryWatches.set(this.#watches.size)
  }

  #keepalive (): void {
    const session = this.#session
    if (!this.#connected || session === undefined) return
    const timer = setTimeout(() => session.destroy(new Error('control plane did not answer a ping')), PING_EVERY_MS)
    try {
      session.ping(() => clearTimeout(timer))
    } catch {
      // Too many pings outstanding, or the session is closing: its own 'close' handles what follows.
      clearTimeout(timer)
    }
  }
}
