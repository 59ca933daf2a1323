// The discovery API on 15012 (HTTP/2): a sidecar watches the authorities it uses; each watch gets
// a snapshot, then a delta per change, every message encoded once and written to all its watchers.
import http2, { type Http2SecureServer, type Http2Server, type ServerHttp2Session, type ServerHttp2Stream, type IncomingHttpHeaders } from 'node:http2'
import type { TLSSocket } from 'node:tls'
import type { Logger } from 'pino'
import type { HostPort } from '../mesh/host-port.ts'
import { RemoraError } from '../errors.ts'
import { normalizeAuthority } from '../discovery/endpoint-table.ts'
import { WATCH_PATH, WIRE_CONTENT_TYPE, diff, encode, type WatchMessage } from '../discovery/wire.ts'
import type { Catalog, CatalogEntry } from './catalog.ts'
import type { ControlMetrics } from './metrics.ts'
import type { Signer } from './signing.ts'
import { CERTIFICATE_PATH } from '../identity/certificate-api.ts'

/** The discovery port's own certificate (from the CA) and the anchors client certificates must chain to. */
export interface ServingTls { readonly key: string, readonly cert: string, readonly ca: readonly string[] }

interface Watch {
  readonly stream: ServerHttp2Stream
  /** As the sidecar asked, normalized (`web.demo:80`). */
  readonly authority: string
  key: string | undefined
}

/** A watch whose sidecar stops reading is reset past this much unread data; it resubscribes. */
const MAX_UNREAD_BYTES = 4 * 1024 * 1024
const AUTHORITY = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*:\d{1,5}$/

export class DiscoveryServer {
  readonly #server: Http2Server | Http2SecureServer
  readonly #signer: Signer | undefined
  readonly #catalog: Catalog
  readonly #log: Logger
  readonly #metrics: ControlMetrics
  readonly #sessions = new Set<ServerHttp2Session>()
  /** Watches of a service, by catalog key. */
  readonly #byKey = new Map<string, Set<Watch>>()
  /** Watches of an authority no service has, by normalized authority. */
  readonly #absent = new Map<string, Set<Watch>>()
  readonly #snapshots = new Map<string, { version: number, buf: Buffer }>()
  #closing = false

  /** With `tls`, the port speaks only TLS 1.3; watches then need a client certificate from the mesh CA. */
  constructor (catalog: Catalog, log: Logger, metrics: ControlMetrics, tls?: ServingTls, signer?: Signer) {
    this.#catalog = catalog
    this.#log = log
    this.#metrics = metrics
    this.#signer = signer
    const settings = { maxConcurrentStreams: 10_000 }
    this.#server = tls === undefined
      ? http2.createServer({ settings })
      : http2.createSecureServer({ ...tlsOptions(tls), settings, allowHTTP1: false })
    this.#server.on('tlsClientError', (err: Error) => log.debug({ err: err.message }, 'discovery TLS handshake failed'))
    this.#server.on('session', (s: ServerHttp2Session) => {
      this.#sessions.add(s)
      metrics.sidecars.inc()
      s.once('close', () => { this.#sessions.delete(s); metrics.sidecars.dec() })
      s.on('error', (err) => log.debug({ err }, 'discovery connection error'))
    })
    this.#server.on('stream', (stream, headers) => this.#onStream(stream, headers))
    catalog.on('change', (key, entry, previous) => this.#onChange(key, entry, previous))
  }

  /** New connections get the new certificate; open ones keep theirs. */
  setCredentials (tls: ServingTls): void {
    if ('setSecureContext' in this.#server) this.#server.setSecureContext(tlsOptions(tls))
  }

  get watches (): number {
    let n = 0
    for (const set of this.#byKey.values()) n += set.size
    for (const set of this.#absent.values()) n += set.size
    return n
  }

  listen (addr: HostPort): Promise<HostPort> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', (err: NodeJS.ErrnoException) => reject(new RemoraError('REMORA_LISTEN', `discovery listener cannot bind ${addr.host}:${addr.port}: ${err.code ?? err.message}`)))
      this.#server.listen(addr.port, addr.host, () => {
        const a = this.#server.address() as { address: string, port: number }
        resolve({ host: a.address, port: a.port })
      })
    })
  }

  /** GOAWAY to every sidecar and end every watch: they reconnect elsewhere or later, keeping their tables. */
  async close (): Promise<void> {
    this.#closing = true
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()))
    for (const set of [...this.#byKey.values(), ...this.#absent.values()]) for (const w of set) if (!w.stream.destroyed) w.stream.end()
    for (const s of this.#sessions) { s.goaway(); s.close() }
    const timer = setTimeout(() => { for (const s of this.#sessions) s.destroy() }, 2000)
    await closed
    clearTimeout(timer)
  }

  #onStream (stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    stream.on('error', () => {})
    const [path, query = ''] = String(headers[':path'] ?? '/').split('?', 2)
    if (path === CERTIFICATE_PATH) {
      if (this.#signer === undefined) return fail(stream, 404, 'ca_off', 'this control plane runs without a CA (REMORA_CA=off), so it signs no certificates')
      this.#signer.handle(stream, headers)
      return
    }
    if (path !== WATCH_PATH) return fail(stream, 404, 'not_found', `no such endpoint ${path}; the discovery API serves GET ${WATCH_PATH}?authority=<name[.namespace]:port>`)
    if (headers[':method'] !== 'GET') return fail(stream, 405, 'method_not_allowed', `use GET ${WATCH_PATH}`)
    if (this.#closing) return fail(stream, 503, 'shutting_down', 'the control plane is shutting down; reconnect')
    if (this.#signer !== undefined && (stream.session?.socket as TLSSocket | undefined)?.authorized !== true) {
      return fail(stream, 401, 'unauthenticated', `watches need a client certificate from this mesh's CA; get one with POST ${CERTIFICATE_PATH}`)
    }
    const raw = new URLSearchParams(query).get('authority')
    if (raw === null || raw === '') return fail(stream, 400, 'bad_request', 'query parameter "authority" is required, e.g. authority=web.demo:80')
    const authority = normalizeAuthority(raw)
    if (!AUTHORITY.test(authority) || authority.length > 260) return fail(stream, 400, 'bad_request', `authority ${JSON.stringify(raw)} is not a DNS name with an optional :port`)
    stream.respond({ ':status': 200, 'content-type': WIRE_CONTENT_TYPE, 'cache-control': 'no-store' })
    const watch: Watch = { stream, authority, key: undefined }
    stream.once('close', () => this.#detach(watch))
    // A watch that arrives before the first sync waits for it: an early "absent" would be a lie.
    if (this.#catalog.synced) this.#attach(watch)
    else this.#catalog.once('synced', () => { if (!stream.destroyed) this.#attach(watch) })
  }

  #attach (watch: Watch): void {
    this.#metrics.watchers.inc()
    const entry = this.#catalog.lookup(watch.authority)
    if (entry === undefined) {
      add(this.#absent, watch.authority, watch)
      this.#write(watch, encode({ type: 'absent', version: this.#catalog.revision, authority: watch.authority }))
      this.#metrics.pushes.inc({ type: 'absent' })
      return
    }
    this.#watchKey(watch, entry)
  }

  #watchKey (watch: Watch, entry: CatalogEntry): void {
    watch.key = entry.key
    add(this.#byKey, entry.key, watch)
    this.#write(watch, this.#snapshot(entry))
    this.#metrics.pushes.inc({ type: 'snapshot' })
  }

  #detach (watch: Watch): void {
    const from = watch.key !== undefined ? this.#byKey : this.#absent
    const id = watch.key ?? watch.authority
    const set = from.get(id)
    if (set?.delete(watch) !== true) return
    this.#metrics.watchers.dec()
    if (set.size > 0) return
    from.delete(id)
    if (watch.key !== undefined) this.#snapshots.delete(id)
  }

  #onChange (key: string, entry: CatalogEntry | undefined, previous: CatalogEntry | undefined): void {
    this.#metrics.revision.set(this.#catalog.revision)
    this.#metrics.services.set(this.#catalog.size)
    const started = process.hrtime.bigint()
    const watchers = this.#byKey.get(key)
    if (watchers !== undefined) {
      if (entry === undefined) {
        this.#byKey.delete(key)
        this.#snapshots.delete(key)
        for (const w of watchers) {
          w.key = undefined
          add(this.#absent, w.authority, w)
          this.#write(w, encode({ type: 'absent', version: this.#catalog.revision, authority: w.authority }))
        }
        this.#metrics.pushes.inc({ type: 'absent' }, watchers.size)
      } else {
        // Watchers of a key were all sent `previous` (or a snapshot of it): one delta serves them all.
        const { service, version } = previous as CatalogEntry
        const message: WatchMessage = diff(service, version, entry.service, entry.version)
        const buf = encode(message)
        for (const w of watchers) this.#write(w, buf)
        this.#metrics.pushes.inc({ type: message.type }, watchers.size)
      }
    }
    if (entry !== undefined) {
      for (const a of entry.service.authorities) {
        const waiting = this.#absent.get(a)
        if (waiting === undefined) continue
        this.#absent.delete(a)
        for (const w of waiting) this.#watchKey(w, entry)
      }
    }
    if (watchers !== undefined || entry !== undefined) {
      this.#metrics.pushDuration.observe(Number(process.hrtime.bigint() - started) / 1e9)
    }
  }

  #snapshot (entry: CatalogEntry): Buffer {
    const cached = this.#snapshots.get(entry.key)
    if (cached?.version === entry.version) return cached.buf
    const buf = encode({ type: 'snapshot', version: entry.version, service: entry.service })
    this.#snapshots.set(entry.key, { version: entry.version, buf })
    return buf
  }

  #write (watch: Watch, buf: Buffer): void {
    const stream = watch.stream
    if (stream.destroyed || stream.closed) return
    if (stream.writableLength > MAX_UNREAD_BYTES) {
      this.#metrics.slowWatchers.inc()
      this.#log.warn({ authority: watch.authority, unread: stream.writableLength }, 'discovery watch reset: the sidecar is not reading its messages; it will resubscribe')
      stream.close(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM)
      return
    }
    stream.write(buf)
  }
}

function tlsOptions (tls: ServingTls): http2.SecureServerOptions {
  return { key: tls.key, cert: tls.cert, ca: [...tls.ca], requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.3', ALPNProtocols: ['h2'] }
}

function add<K, V> (map: Map<K, Set<V>>, key: K, value: V): void {
  let set = map.get(key)
  if (set === undefined) map.set(key, set = new Set())
  set.add(value)
}

function fail (stream: ServerHttp2Stream, status: number, code: string, message: string): void {
  if (stream.destroyed) return
  stream.respond({ ':status': status, 'content-type': 'application/json' })
  stream.end(JSON.stringify({ error: { code, message } }) + '\n')
}
