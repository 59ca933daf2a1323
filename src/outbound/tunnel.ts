// CONNECT tunnels: the bytes inside a tunnel re-enter the outbound listener over loopback as a
// fresh connection (so node's HTTP/1 and HTTP/2 servers get a socket of their own, never one the
// CONNECT parser already consumed); the tunnel's authority is remembered by that connection's port.
import net from 'node:net'
import type { Duplex } from 'node:stream'
import type { HostPort } from '../mesh/host-port.ts'
import { splice } from '../transport/splice.ts'

export class Tunnels {
  readonly #byPort = new Map<number, string>()
  #listener: HostPort | undefined

  /** Where tunnels re-enter: the outbound listener's own address, known once it is bound. */
  bind (listener: HostPort): void { this.#listener = listener }

  open (socket: Duplex, authority: string): void {
    if (this.#listener === undefined) { socket.destroy(); return }
    const host = this.#listener.host === '0.0.0.0' ? '127.0.0.1' : this.#listener.host === '::' ? '::1' : this.#listener.host
    const inner = net.connect({ host, port: this.#listener.port, noDelay: true })
    let port: number | undefined
    inner.once('connect', () => {
      port = inner.localPort
      if (port !== undefined) this.#byPort.set(port, authority)
    })
    inner.once('close', () => { if (port !== undefined) this.#byPort.delete(port) })
    splice(socket, inner)
  }

  /** The CONNECT authority for a connection that came through a tunnel (works on http2's socket proxy). */
  authorityOf (socket: { remotePort?: number, remoteAddress?: string } | undefined): string | undefined {
    if (socket === undefined || this.#byPort.size === 0 || socket.remotePort === undefined) return undefined
    return this.#byPort.get(socket.remotePort)
  }
}
