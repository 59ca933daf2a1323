// What a request to the inbound port says in band, read one way on both of its listeners (HTTP/1.1
// and h2): whether a peer sidecar sent it, and which app port it is for.

/**
 * Mesh headers beyond the port (attempt, original protocol, upgrade) count only from a peer sidecar:
 * with mTLS on, a caller with a verified mesh identity; with it off nothing tells a sidecar from a
 * client, so a request that names the target port (as every sidecar's does) is taken for one.
 */
export function fromPeer (mtlsOn: boolean, rawPort: string | undefined, identity: string | undefined): boolean {
  return mtlsOn ? identity !== undefined : rawPort !== undefined
}

/**
 * The app port: the one named in `remora-target-port` (a peer's, or any request's: authorization
 * still decides whether the caller may reach it), else where a redirected connection was going;
 * null when the named one is no port.
 */
export function targetPort (rawPort: string | undefined, redirectedTo: number | undefined): number | undefined | null {
  if (rawPort === undefined) return redirectedTo
  const port = Number(rawPort)
  return Number.isInteger(port) && port > 0 && port < 65536 ? port : null
}
