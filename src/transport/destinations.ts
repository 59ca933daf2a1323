// Where each accepted connection was going: its redirected original destination, or the target of
// the CONNECT tunnel it carries; looked up by the connection's remote address (http2 hands out a
// proxy of the socket, so the socket object itself is no key).
import type { HostPort } from '../mesh/host-port.ts'

export interface Destination {
  /** `host:port` as the table resolves it: the original destination's IP:port, or the CONNECT authority. */
  readonly authority: string
  readonly port: number
  /** `redirect`: iptables sent it here (SO_ORIGINAL_DST); `connect`: the inside of a CONNECT tunnel. */
  readonly via: 'redirect' | 'connect'
  /** The address it was going to (redirected connections only). */
  readonly address?: HostPort
}

interface Peer { readonly remoteAddress?: string, readonly remotePort?: number }

export class Destinations {
  readonly #byPeer = new Map<string, Destination>()

  set (peer: Peer, dest: Destination): () => void {
    const key = keyOf(peer)
    if (key === undefined) return () => {}
    this.#byPeer.set(key, dest)
    return () => { if (this.#byPeer.get(key) === dest) this.#byPeer.delete(key) }
  }

  of (peer: Peer | undefined): Destination | undefined {
    if (peer === undefined || this.#byPeer.size === 0) return undefined
    const key = keyOf(peer)
    return key === undefined ? undefined : this.#byPeer.get(key)
  }
}

function keyOf (peer: Peer): string | undefined {
  if (peer.remotePort === undefined) return undefined
  return `${(peer.remoteAddress ?? '').replace(/^::ffff:/, '')}|${peer.remotePort}`
}
