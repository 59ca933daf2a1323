// CONNECT tunnels: the bytes inside a tunnel re-enter the outbound listener over loopback as a
// fresh connection (so node's HTTP/1 and HTTP/2 servers get a socket of their own, never one the
// CONNECT parser already consumed); the tunnel's authority is that connection's destination.
import net from 'node:net'
import type { Duplex } from 'node:stream'
import type { HostPort } from '../mesh/host-port.ts'
import type { Destinations } from '../transport/destinations.ts'
import { splice } from '../transport/splice.ts'

export class Tunnels {
  readonly #destinations: Destinations
  #listener: HostPort | undefined

  constructor (destinations: Destinations) { this.#destinations = destinations }

  /** Where tunnels re-enter: the outbound listener's own address, known once it is bound. */
  bind (listener: HostPort): void { this.#listener = listener }

  open (socket: Duplex, authority: string): void {
    if (this.#listener === undefined) { socket.destroy(); return }
    const host = this.#listener.host === '0.0.0.0' ? '127.0.0.1' : this.#listener.host === '::' ? '::1' : this.#listener.host
    const inner = net.connect({ host, port: this.#listener.port, noDelay: true, allowHalfOpen: true })
    let forget = (): void => {}
    const port = Number(/:(\d+)$/.exec(authority)?.[1] ?? 0)
    inner.once('connect', () => {
      forget = this.#destinations.set({ remoteAddress: inner.localAddress, remotePort: inner.localPort }, { authority, port, via: 'connect' })
    })
    inner.once('close', () => forget())
    splice(socket, inner)
  }
}
