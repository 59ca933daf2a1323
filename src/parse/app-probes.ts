// REMORA_APP_PROBES: the app's httpGet / tcpSocket probes that the injector rewrote to
// GET /app-health/<container>/<kind> on the sidecar's admin port, as the injector writes them:
// {"web/readiness": {"port": 8080, "path": "/healthz", "scheme": "HTTP", "headers": [{"name": "x", "value": "y"}]},
//  "web/liveness": {"port": 8080, "tcp": true}}

export const APP_PROBE_KINDS = ['liveness', 'readiness', 'startup'] as const
export type AppProbeKind = typeof APP_PROBE_KINDS[number]

export interface AppProbeHeader { readonly name: string, readonly value: string }

/** kubelet's httpGet: a GET to 127.0.0.1:<port><path>; 200-399 is healthy. */
export interface HttpAppProbe {
  readonly type: 'http'
  readonly port: number
  /** The request target, query included; `/` when the probe gave none (as kubelet). */
  readonly path: string
  readonly scheme: 'HTTP' | 'HTTPS'
  readonly headers: readonly AppProbeHeader[]
}

/** kubelet's tcpSocket: a TCP connection to 127.0.0.1:<port> that opens is healthy. */
export interface TcpAppProbe {
  readonly type: 'tcp'
  readonly port: number
}

export type AppProbe = HttpAppProbe | TcpAppProbe

/** By name, `<container>/<kind>`: frozen, with no prototype (a name from a URL finds only a declared probe). */
export type AppProbes = Readonly<Record<string, AppProbe>>

/** No probes declared (REMORA_APP_PROBES unset). */
export const NO_APP_PROBES: AppProbes = Object.freeze(Object.create(null) as Record<string, AppProbe>)

/** A Kubernetes container name (RFC 1123 label). */
const CONTAINER = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/
/** An HTTP field name (RFC 9110 token). */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
/** A request target as it goes on the request line: visible ASCII, no space, no fragment. */
const PATH = /^\/[\x21-\x22\x24-\x7e]*$/
const HTTP_FIELDS = ['port', 'path', 'scheme', 'headers']
const TCP_FIELDS = ['port', 'tcp']

/** The declared probe of that name, or undefined; never an inherited property. */
export function appProbeOf (probes: AppProbes, name: string): AppProbe | undefined {
  return Object.hasOwn(probes, name) ? probes[name] : undefined
}

/** Parses REMORA_APP_PROBES strictly; an error names the probe (its key) and what is wrong. */
export function parseAppProbes (raw: string): AppProbes {
  let value: unknown
  try {
    value = JSON.parse(raw)
  } catch (err) {
    throw new Error(`not JSON (${(err as Error).message}); expected {"<container>/<liveness|readiness|startup>": {"port": 8080, "path": "/healthz"} or {"port": 8080, "tcp": true}}`, { cause: err })
  }
  if (!isObject(value)) throw new Error(`expected a JSON object of probes by "<container>/<kind>", got ${describe(value)}`)
  const out: Record<string, AppProbe> = Object.create(null) as Record<string, AppProbe>
  for (const [key, entry] of Object.entries(value)) {
    const where = JSON.stringify(key)
    const slash = key.indexOf('/')
    const container = key.slice(0, slash)
    const kind = key.slice(slash + 1)
    if (slash < 0 || !CONTAINER.test(container)) throw new Error(`${where}: expected "<container>/<kind>" with a container name (lower-case letters, digits, "-")`)
    if (!(APP_PROBE_KINDS as readonly string[]).includes(kind)) throw new Error(`${where}: the probe kind "${kind}" is not one of ${APP_PROBE_KINDS.join(', ')}`)
    out[key] = Object.freeze(parseProbe(where, entry))
  }
  return Object.freeze(out)
}

function parseProbe (where: string, entry: unknown): AppProbe {
  if (!isObject(entry)) throw new Error(`${where}: expected an object such as {"port": 8080, "path": "/healthz"} or {"port": 8080, "tcp": true}, got ${describe(entry)}`)
  const tcp = Object.hasOwn(entry, 'tcp')
  const allowed = tcp ? TCP_FIELDS : HTTP_FIELDS
  const unknown = Object.keys(entry).filter((k) => !allowed.includes(k))
  if (unknown.length > 0) {
    throw new Error(`${where}: unknown field${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')} (${tcp ? 'a tcp probe has port and tcp' : 'an http probe has port, path, scheme and headers; a tcp probe port and tcp'})`)
  }
  const port = entry.port
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`${where}: port must be a number 1-65535, got ${describe(port)}`)
  if (tcp) {
    if (entry.tcp !== true) throw new Error(`${where}: tcp must be true, got ${describe(entry.tcp)}`)
    return { type: 'tcp', port }
  }
  const path = entry.path ?? '/'
  if (typeof path !== 'string' || !PATH.test(path)) throw new Error(`${where}: path must start with "/" and hold only visible ASCII (no spaces, no "#"), got ${describe(path)}`)
  const scheme = entry.scheme ?? 'HTTP'
  if (scheme !== 'HTTP' && scheme !== 'HTTPS') throw new Error(`${where}: scheme must be "HTTP" or "HTTPS", got ${describe(scheme)}`)
  const headers = entry.headers ?? []
  if (!Array.isArray(headers)) throw new Error(`${where}: headers must be a list of {"name": …, "value": …}, got ${describe(headers)}`)
  return { type: 'http', port, path, scheme, headers: Object.freeze(headers.map((h: unknown, i: number) => parseHeader(`${where} headers[${i}]`, h))) }
}

function parseHeader (where: string, h: unknown): AppProbeHeader {
  if (!isObject(h)) throw new Error(`${where}: expected {"name": …, "value": …}, got ${describe(h)}`)
  const unknown = Object.keys(h).filter((k) => k !== 'name' && k !== 'value')
  if (unknown.length > 0) throw new Error(`${where}: unknown field${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')} (a header has name and value)`)
  if (typeof h.name !== 'string' || !TOKEN.test(h.name)) throw new Error(`${where}: name must be an HTTP header name, got ${describe(h.name)}`)
  // Field values: visible characters, spaces and tabs (Latin-1 as HTTP/1.1 carries it); never CR, LF or NUL (they would split the request).
  if (typeof h.value !== 'string' || !/^[\t\x20-\x7e\x80-\xff]*$/.test(h.value)) throw new Error(`${where}: value of ${h.name} must be a string of visible characters, spaces and tabs, got ${typeof h.value === 'string' ? 'one with control characters (not shown: it may be a secret)' : describe(h.value)}`)
  return Object.freeze({ name: h.name, value: h.value })
}

function isObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function describe (v: unknown): string {
  if (v === undefined) return 'nothing'
  if (Array.isArray(v)) return 'a list'
  if (v === null) return 'null'
  if (typeof v === 'object') return 'an object'
  const s = JSON.stringify(v)
  return s.length > 60 ? `${s.slice(0, 57)}…` : s
}
