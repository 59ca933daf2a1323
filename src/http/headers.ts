// Header rules at the protocol boundary: hop-by-hop removal (RFC 9110 §7.6.1) and mesh-owned headers.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'

export type Headers = Record<string, string | string[]>

/** Headers that describe one connection, never forwarded (and forbidden in HTTP/2). */
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade',
  'http2-settings', 'proxy-authorization', 'host',
  // The sidecar answers `Expect: 100-continue` itself (as Envoy does by default).
  'expect',
])

/** Headers the mesh owns; a value arriving from outside the mesh is never trusted. */
export const MeshHeader = Object.freeze({
  origProto: 'remora-orig-proto',
  clientId: 'remora-client-id',
  proxyError: 'remora-proxy-error',
  attempt: 'remora-attempt',
  /** The app port on the peer workload (DESIGN: "the target app port travels in-band"). */
  targetPort: 'remora-target-port',
  /** An HTTP/1.1 Upgrade carried over an h2 stream: the Upgrade header's value. */
  upgrade: 'remora-upgrade',
  /** On the h2 response to an upgrade: the app's real status (101 when it switched). */
  upgradeStatus: 'remora-upgrade-status',
})

const MESH_HEADERS = new Set(Object.values(MeshHeader))

/**
 * Headers whose value is new on every request (a span id): sent over HTTP/2 as never-indexed
 * literals. Indexed, each value took a slot in HPACK's dynamic table that no later request could
 * use, and pushed out the headers that do repeat (authority, user agent, the mesh's own), so those
 * went out as literals again: work for both ends' compressors, and bigger frames.
 */
export const PER_REQUEST_HEADERS: readonly string[] = Object.freeze(['traceparent', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-parentspanid'])

/**
 * Copies headers for the next hop: drops pseudo-headers, hop-by-hop headers and every header the
 * `Connection` header names. `te: trailers` survives (gRPC needs it over HTTP/2).
 */
export function forwardable (incoming: IncomingHttpHeaders | Headers | OutgoingHttpHeaders, dropMesh: boolean): Headers {
  const out: Headers = {}
  const connection = incoming.connection
  const named = connection === undefined ? undefined : new Set(String(connection).toLowerCase().split(',').map((s) => s.trim()))
  for (const [name, value] of Object.entries(incoming)) {
    if (value === undefined || name.charCodeAt(0) === 58 /* ':' */) continue
    const lower = name.toLowerCase()
    if (HOP_BY_HOP.has(lower) || named?.has(lower) === true || (dropMesh && MESH_HEADERS.has(lower as never))) {
      if (lower === 'te' && String(value).toLowerCase().includes('trailers')) out.te = 'trailers'
      continue
    }
    out[lower] = typeof value === 'number' ? String(value) : value
  }
  return out
}

/**
 * A request's headers without those whose name has an underscore, dropped as nginx does
 * (underscores_in_headers off): apps behind CGI-style gateways (PHP, WSGI, Rack, many frameworks)
 * read `X_Auth_User` as `X-Auth-User` and `Transfer_Encoding` as `Transfer-Encoding`, so one
 * would pass as a header the mesh never saw. Responses keep theirs.
 */
export function withoutUnderscores (headers: Headers): Headers {
  if (!Object.keys(headers).some((name) => name.includes('_'))) return headers
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !name.includes('_')))
}

export function first (value: string | string[] | number | undefined): string | undefined {
  if (value === undefined) return undefined
  return Array.isArray(value) ? value[0] : String(value)
}

export function isGrpc (headers: Headers | IncomingHttpHeaders): boolean {
  return first(headers['content-type'])?.startsWith('application/grpc') === true
}

/** Responses to these never carry a body, whatever their headers say. */
export function bodyless (method: string, status: number): boolean {
  return method === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200)
}
