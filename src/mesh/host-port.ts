// A host and a port: where a listener, a peer sidecar or a control plane is.
export interface HostPort { readonly host: string, readonly port: number }

/** `host:port` as the table knows it; an IPv6 address in brackets, in its one short form (RFC 5952, as SO_ORIGINAL_DST reports it). */
export function authorityOf (host: string, port: number): string {
  return `${host.includes(':') ? new URL(`http://[${host}]/`).hostname : host}:${port}`
}
