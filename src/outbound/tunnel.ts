// A CONNECT tunnel fixes the authority for everything sent inside it; the socket carries it.
import type { Duplex } from 'node:stream'

const AUTHORITY = Symbol('remora.tunnelAuthority')

export function tagTunnel (socket: Duplex, authority: string): void {
  (socket as unknown as Record<symbol, string>)[AUTHORITY] = authority
}

/** Works on plain sockets and on the proxy object node's http2 hands out as `session.socket`. */
export function tunnelAuthority (socket: unknown): string | undefined {
  if (socket === null || socket === undefined) return undefined
  return (socket as Record<symbol, string | undefined>)[AUTHORITY]
}
