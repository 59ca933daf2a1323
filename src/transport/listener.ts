// A TCP listener that detects each connection's protocol and hands it to the server for it.
import net, { type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import { RemoraError } from '../errors.ts'
import type { HostPort } from '../mesh/host-port.ts'
import { detect, type Detected } from './detect.ts'
import type { ProxyMetrics } from '../telemetry/metrics.ts'

export interface ProtocolServers {
  readonly http1: net.Server
  readonly h2: net.Server
  /** TLS ClientHellos (mTLS from peer sidecars); without it, TLS connections are closed. */
  readonly tls?: net.Server
}

export class SniffingListener {
  readonly name: string
  readonly #server: net.Server
  readonly #servers: ProtocolServers
  readonly #log: Logger
  readonly #sockets = new Set<Duplex>()
  readonly #metrics: ProxyMetrics | undefined

  constructor (name: 'inbound' | 'outbound', servers: ProtocolServers, log: Logger, metrics?: ProxyMetrics) {
    this.name = name
    this.#servers = servers
    this.#log = log
    this.#metrics = metrics
    this.#server = net.createServer({ noDelay: true, pauseOnConnect: false }, (socket) => {
      this.#count(socket)
      this.accept(socket)
    })
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

  /** Also used for the inside of CONNECT tunnels, which start a new protocol on an old socket. */
  accept (socket: Socket | Duplex): void {
    this.#sockets.add(socket)
    socket.once('close', () => this.#sockets.delete(socket))
    socket.on('error', (err: NodeJS.ErrnoException) => this.#log.debug({ listener: this.name, err: err.message }, 'connection error'))
    detect(socket as Socket, 30_000, (kind: Detected) => {
      switch (kind) {
        case 'h2': this.#servers.h2.emit('connection', socket); break
        case 'tls':
          // No resume: TLS takes over the socket's handle and replays the bytes detection put back.
          if (this.#servers.tls !== undefined) { this.#servers.tls.emit('connection', socket); break }
          this.#log.debug({ listener: this.name }, 'connection closed: TLS, but this sidecar runs without mTLS (REMORA_TRUST_ANCHORS unset)')
          socket.destroy()
          break
        case 'http1':
          this.#servers.http1.emit('connection', socket)
          // node's HTTP/1 parser reads the handle directly; the bytes we put back need a resume.
          socket.resume()
          break
        default:
          this.#log.debug({ listener: this.name, kind }, 'connection closed: neither HTTP/1.1, HTTP/2 nor TLS (opaque TCP comes with a later version)')
          socket.destroy()
      }
    })
  }

  listen (addr: HostPort): Promise<HostPort> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', (err: NodeJS.ErrnoException) => {
        reject(new RemoraError('REMORA_LISTEN', `${this.name} listener cannot bind ${addr.host}:${addr.port}: ${err.code ?? err.message}${err.code === 'EADDRINUSE' ? ' (another process uses that port; pick another with the setting for this listener)' : ''}`))
      })
      this.#server.listen(addr.port, addr.host, () => {
        const a = this.#server.address() as net.AddressInfo
        resolve({ host: a.address, port: a.port })
      })
    })
  }

  /** Stop accepting; connections already open go on. */
  stopAccepting (): void {
    this.#server.close()
  }

  destroyAll (): void {
    for (const s of this.#sockets) s.destroy()
  }
}
