// A TCP listener that finds where each connection was going and what it speaks, and hands it to
// the server for that protocol, or to the opaque-TCP handler.
import net, { type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import { RemoraError } from '../errors.ts'
import type { HostPort } from '../mesh/host-port.ts'
import { detect, type Detected } from './detect.ts'
import type { ProxyMetrics } from '../telemetry/metrics.ts'
import type { Destination, Destinations } from './destinations.ts'
import { authorityOf } from '../mesh/host-port.ts'
import type { OriginalDstLookup } from './original-dst.ts'
import { sniOf } from './client-hello.ts'
import { LogThrottle } from '../telemetry/throttle.ts'

/** Why a connection is carried as opaque bytes. */
export type OpaqueCause =
  | { readonly kind: 'port' | 'service' | 'egress' | 'tunnel' | 'unknown' | 'timeout' | 'remora-tcp' }
  | { readonly kind: 'tls', readonly sni: string | undefined }

export type OpaqueKind = 'service' | 'egress'

export interface ProtocolServers {
  readonly http1: net.Server
  readonly h2: net.Server
  /** TLS ClientHellos (mTLS from peer sidecars); without it, TLS goes to `opaque` (or is closed). */
  readonly tls?: net.Server
  /** Bytes that are no HTTP: carried opaquely to where they were going; without it they are closed. */
  readonly opaque?: (socket: Socket, cause: OpaqueCause, dest: Destination | undefined) => void
}

export interface ListenerOptions {
  /** Reads redirected connections' original destination; absent: no connection is taken as redirected. */
  readonly originalDst?: OriginalDstLookup & { readonly available: true }
  readonly destinations: Destinations
  /** Server-first protocols and declared opaque ports: carried without waiting for a first byte. */
  readonly opaquePorts: ReadonlySet<number>
  /**
   * Whether a redirected destination skips detection: `service` (declared opaque), `egress` (not in
   * the mesh: passed through or refused as it is); may have to ask the control plane.
   */
  readonly opaqueDestination?: (dest: Destination) => OpaqueKind | undefined | Promise<OpaqueKind | undefined>
  /** How long a redirected connection may stay silent before it is taken as opaque. */
  readonly detectTimeoutMs: number
  /** Connections open at once on this listener (all its addresses); one more is closed at once, counted. */
  readonly maxConnections: number
}

/** How long a client of the HTTP proxy (not redirected) may say nothing. */
const PROXY_CLIENT_TIMEOUT_MS = 30_000

export class SniffingListener {
  readonly name: 'inbound' | 'outbound'
  /** One server per bound address (the configured one, and its IPv6 twin). */
  readonly #bound: net.Server[] = []
  readonly #servers: ProtocolServers
  readonly #log: Logger
  readonly #sockets = new Set<Duplex>()
  readonly #metrics: ProxyMetrics | undefined
  readonly #options: ListenerOptions
  readonly #overLimit = new LogThrottle()
  /** Ports whose detection timed out, logged once each. */
  readonly #timedOut = new Set<number>()
  #address: HostPort | undefined

  constructor (name: 'inbound' | 'outbound', servers: ProtocolServers, log: Logger, metrics: ProxyMetrics | undefined, options: ListenerOptions) {
    this.name = name
    this.#servers = servers
    this.#log = log
    this.#metrics = metrics
    this.#options = options
  }

  /** TCP metrics per accepted connection; CONNECT tunnels re-entering over loopback are counted again, as the connections they are. */
  #count (socket: Socket): void {
    const m = this.#metrics
    if (m === undefined) return
    const direction = this.name
    const opened = performance.now()
    m.tcpOpened.inc({ direction })
    socket.once('close', () => {
      m.tcpClosed.inc({ direction })
      m.tcpBytes.inc({ direction, flow: 'received' }, socket.bytesRead)
      m.tcpBytes.inc({ direction, flow: 'sent' }, socket.bytesWritten)
      m.tcpDuration.observe({ direction }, (performance.now() - opened) / 1000)
    })
  }

  accept (socket: Socket): void {
    this.#sockets.add(socket)
    socket.once('close', () => this.#sockets.delete(socket))
    socket.on('error', (err: NodeJS.ErrnoException) => this.#log.debug({ listener: this.name, err: err.message }, 'connection error'))
    const dest = this.#redirected(socket)
    if (dest === undefined) {
      detect(socket, PROXY_CLIENT_TIMEOUT_MS, (kind, head) => this.#dispatch(socket, kind, head, undefined))
      return
    }
    socket.once('close', this.#options.destinations.set(socket, dest))
    if (this.#options.opaquePorts.has(dest.port)) { this.#opaque(socket, { kind: 'port' }, dest); return }
    const declared = this.#options.opaqueDestination?.(dest)
    const decide = (opaque: OpaqueKind | undefined): void => {
      if (socket.destroyed) return
      if (opaque !== undefined) this.#opaque(socket, { kind: opaque }, dest)
      else detect(socket, this.#options.detectTimeoutMs, (kind, head) => this.#dispatch(socket, kind, head, dest))
    }
    if (declared instanceof Promise) declared.then(decide, () => decide(undefined))
    else decide(declared)
  }

  /** The original destination of a connection iptables redirected here; undefined when it came here itself. */
  #redirected (socket: Socket): Destination | undefined {
    const address = this.#options.originalDst?.lookup(socket)
    if (address === undefined) return undefined
    const self = this.#address
    if (self !== undefined && address.port === self.port && (address.host === socket.localAddress?.replace(/^::ffff:/, '') || address.host === self.host)) return undefined
    return { authority: authorityOf(address.host, address.port), port: address.port, via: 'redirect', address }
  }

  #dispatch (socket: Socket, kind: Detected, head: Buffer, dest: Destination | undefined): void {
    switch (kind) {
      case 'h2': this.#servers.h2.emit('connection', socket); return
      case 'http1':
        this.#servers.http1.emit('connection', socket)
        // node's HTTP/1 parser reads the handle directly; the bytes we put back need a resume.
        socket.resume()
        return
      case 'tls':
        // No resume: TLS takes over the socket's handle and replays the bytes detection put back.
        if (this.#servers.tls !== undefined) { this.#servers.tls.emit('connection', socket); return }
        this.#opaque(socket, { kind: 'tls', sni: sniOf(head) }, dest)
        return
      case 'remora-tcp': this.#opaque(socket, { kind: 'remora-tcp' }, dest); return
      case 'h2-invalid':
        // A connection error (RFC 9113 §3.4) that needs no GOAWAY: the peer speaks no HTTP/2.
        this.#log.debug({ listener: this.name }, 'connection closed: an invalid HTTP/2 preface')
        socket.destroy()
        return
      case 'timeout': {
        const port = dest?.port ?? 0
        this.#metrics?.detectTimeouts.inc({ direction: this.name, port: String(port) })
        if (!this.#timedOut.has(port)) {
          this.#timedOut.add(port)
          this.#log.warn({ listener: this.name, port, waitedMs: dest === undefined ? PROXY_CLIENT_TIMEOUT_MS : this.#options.detectTimeoutMs }, `protocol detection timed out on port ${port}: the client sent nothing, so the connection is carried as opaque TCP (a server-speaks-first protocol?); add the port to REMORA_OPAQUE_PORTS to skip the wait (logged once per port)`)
        }
        this.#opaque(socket, { kind: 'timeout' }, dest)
        return
      }
      default: this.#opaque(socket, { kind: 'unknown' }, dest)
    }
  }

  #opaque (socket: Socket, cause: OpaqueCause, dest: Destination | undefined): void {
    const d = dest ?? this.#options.destinations.of(socket)
    if (this.#servers.opaque === undefined || (d === undefined && cause.kind !== 'remora-tcp')) {
      this.#log.debug({ listener: this.name, cause: cause.kind }, 'connection closed: neither HTTP/1.1, HTTP/2 nor TLS, and no known destination to carry it to')
      socket.destroy()
      return
    }
    this.#servers.opaque(socket, cause, d)
  }

  /**
   * Over the cap: closed before a byte is read, counted, and said once a minute (a flood of
   * connections, or a leak somewhere, should be seen; a line per connection would be a flood too).
   */
  #refuse (socket: Socket): void {
    socket.on('error', () => {})
    socket.destroy()
    this.#metrics?.connectionsOverLimit.inc({ direction: this.name })
    this.#overLimit.run(this.name, (suppressed) => this.#log.warn({ listener: this.name, maxConnections: this.#options.maxConnections, suppressed }, `connection refused: ${this.#options.maxConnections} connections already open on the ${this.name} listener (REMORA_MAX_CONNECTIONS)`))
  }

  /** Binds `addr`; the first address bound is the listener's own (the one redirected connections are told from). */
  listen (addr: HostPort): Promise<HostPort> {
    // Half-open allowed: an opaque client may end its side and still read the answer (HTTP servers handle it themselves).
    const server = net.createServer({ noDelay: true, pauseOnConnect: false, allowHalfOpen: true }, (socket) => {
      if (this.#sockets.size >= this.#options.maxConnections) { this.#refuse(socket); return }
      this.#count(socket)
      this.accept(socket)
    })
    return new Promise((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        reject(new RemoraError('REMORA_LISTEN', `${this.name} listener cannot bind ${addr.host}:${addr.port}: ${err.code ?? err.message}${err.code === 'EADDRINUSE' ? ' (another process uses that port; pick another with the setting for this listener)' : ''}`))
      })
      // An IPv6 wildcard twin takes IPv6 only: IPv4 has its own server.
      server.listen({ port: addr.port, host: addr.host, ipv6Only: addr.host === '::' && this.#bound.length > 0 }, () => {
        this.#bound.push(server)
        const a = server.address() as net.AddressInfo
        const bound = { host: a.address, port: a.port }
        this.#address ??= bound
        resolve(bound)
      })
    })
  }

  /** Stop accepting; connections already open go on. */
  stopAccepting (): void {
    for (const s of this.#bound) s.close()
  }

  destroyAll (): void {
    for (const s of this.#sockets) s.destroy()
  }
}
