// Every REMORA_* setting of the proxy, declared once: name, flag, default, parser and help text.
import { RemoraError } from '../errors.ts'
import { DEFAULT_POLICIES, type AllowRule, type DefaultPolicy } from '../mesh/authorization.ts'
import { parseAllowSetting } from '../parse/allow-list.ts'
import type { HostPort } from '../mesh/host-port.ts'
import { parseHostPort, parsePort } from '../parse/host-port.ts'
import { parseDuration } from '../parse/duration.ts'
import { parsePortList, portsOf, type PortRange } from '../parse/port-list.ts'
import { parseCidrList, type Cidr } from '../parse/cidr.ts'
import { parseAppProbes, type AppProbes } from '../parse/app-probes.ts'
import { checkTrustDomain, isObjectName } from '../mesh/spiffe-id.ts'
import { parseQuantity } from '../parse/quantity.ts'
import { readAnnotationsFile, type Annotations } from './annotations.ts'

export interface Setting<T> {
  /** Environment variable, e.g. REMORA_INBOUND_ADDR; the CLI flag is derived (--inbound-addr). */
  readonly env: string
  readonly help: string
  /** Default as the user would write it; undefined = not set. */
  readonly default?: string
  readonly parse: (raw: string) => T
  /** false: not read from a pod annotation (the annotation is derived from env, see annotationOf). */
  readonly annotation?: false
}

/** A setting with a default: it always has a value, and its type says so (no casts at the use). */
export interface DefaultedSetting<T> extends Setting<T> { readonly default: string }

const defaulted = <T>(s: DefaultedSetting<T>): DefaultedSetting<T> => s
const optional = <T>(s: Setting<T>): Setting<T> => s

export type Environment = Readonly<Record<string, string | undefined>>

export const flagOf = (s: Setting<unknown>): string =>
  '--' + s.env.replace(/^REMORA_/, '').toLowerCase().replace(/_/g, '-')

/** The pod annotation of a setting: REMORA_SKIP_INBOUND_PORTS ↔ remora.dev/skip-inbound-ports. */
export const annotationOf = (s: Setting<unknown>): string =>
  'remora.dev/' + s.env.replace(/^REMORA_/, '').toLowerCase().replace(/_/g, '-')


function oneOf<T extends string> (...values: T[]): (raw: string) => T {
  return (raw) => {
    const v = raw.trim().toLowerCase()
    if (!(values as string[]).includes(v)) throw new Error(`expected one of ${values.join(', ')}, got "${raw}"`)
    return v as T
  }
}

const text = (raw: string): string => raw.trim()

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = typeof LOG_LEVELS[number]

/** Server-speaks-first protocols: FTP, SMTP (25, 587), POP3, IMAP, MySQL/MariaDB, NATS client and cluster. */
export const SERVER_FIRST_PORTS = '21,25,110,143,587,3306,4222,6222'

export const ProxySettings = Object.freeze({
  meshFile: optional<string>({ env: 'REMORA_MESH_FILE', help: 'Local mesh YAML file: services, endpoints, workloads. Reloaded on change. With REMORA_CONTROL_ADDR, only its workloads: entry is read.', parse: text }),
  controlAddr: optional<HostPort>({ env: 'REMORA_CONTROL_ADDR', help: 'The control plane (remora control) as host:port; services then come from it, watched per authority on first use.', parse: parseHostPort }),
  workload: optional<string>({ env: 'REMORA_WORKLOAD', help: 'Name of the workload this sidecar serves, as named under `workloads:` in the mesh file.', parse: text }),
  outboundAddr: defaulted<HostPort>({ env: 'REMORA_OUTBOUND_ADDR', default: '127.0.0.1:15001', help: "Outbound listener: the workload's own outgoing traffic (redirected, or as an HTTP proxy).", parse: parseHostPort }),
  inboundAddr: defaulted<HostPort>({ env: 'REMORA_INBOUND_ADDR', default: '0.0.0.0:15006', help: 'Inbound listener: traffic from peer sidecars and from non-meshed clients.', parse: parseHostPort }),
  adminAddr: defaulted<HostPort>({ env: 'REMORA_ADMIN_ADDR', default: '0.0.0.0:15000', help: 'Admin server: /live /ready /metrics for all; /config.json /endpoints.json POST /shutdown from loopback only.', parse: parseHostPort }),
  appPorts: optional<readonly number[]>({ env: 'REMORA_APP_PORTS', help: 'Comma-separated ports the local app listens on (127.0.0.1); inbound traffic may target only these. Default: from the mesh file workload.', parse: (raw: string) => Object.freeze(raw.split(',').filter((p) => p.trim() !== '').map(parsePort)) }),
  logLevel: defaulted<LogLevel>({ env: 'REMORA_LOG_LEVEL', default: 'info', help: `Log level: ${LOG_LEVELS.join(', ')}.`, parse: oneOf(...LOG_LEVELS) }),
  accessLog: defaulted<boolean>({ env: 'REMORA_ACCESS_LOG', default: 'on', help: 'One JSON line per request: on or off.', parse: (raw: string) => oneOf('on', 'off')(raw) === 'on' }),
  connectTimeout: defaulted<number>({ env: 'REMORA_CONNECT_TIMEOUT', default: '5s', help: 'How long to wait for a TCP connection to a peer sidecar or the local app.', parse: parseDuration }),
  shutdownGrace: defaulted<number>({ env: 'REMORA_SHUTDOWN_GRACE', default: '30s', help: 'On SIGTERM, how long in-flight requests may take to finish before connections are closed.', parse: parseDuration }),
  trustAnchors: optional<string>({ env: 'REMORA_TRUST_ANCHORS', help: "PEM file of the mesh's trust anchor(s) (the CA root). Turns mutual TLS on: the sidecar gets its certificate from the control plane and every sidecar-to-sidecar hop is mTLS.", parse: text }),
  identity: optional<string>({ env: 'REMORA_IDENTITY', help: "This workload's SPIFFE ID (spiffe://<trust-domain>/ns/<ns>/sa/<sa>). Default: from the mesh file workload.", parse: text }),
  tokenFile: optional<string>({ env: 'REMORA_TOKEN_FILE', help: "File holding the proof of identity sent with each certificate request (in Kubernetes, a projected service account token with audience remora); re-read at every renewal. Default: the workload's bootstrapToken in the mesh file.", parse: text }),
  inboundMtls: defaulted<'strict' | 'permissive'>({ env: 'REMORA_INBOUND_MTLS', default: 'strict', help: 'With mTLS on: strict (inbound accepts only mTLS) or permissive (plaintext from non-meshed clients too, on the same port).', parse: oneOf('strict', 'permissive') }),
  authzDefault: optional<DefaultPolicy>({ env: 'REMORA_AUTHZ_DEFAULT', help: `Who may call ports without an allow list: ${DEFAULT_POLICIES.join(', ')}. Default: the mesh file workload's, else all-authenticated with strict mTLS and all-unauthenticated otherwise.`, parse: oneOf(...DEFAULT_POLICIES) }),
  authzAllow: optional<Record<number, AllowRule[]>>({ env: 'REMORA_AUTHZ_ALLOW', help: 'Allow lists per app port, e.g. 8080=ns:shop,spiffe://cluster.local/ns/ops/sa/admin;9090=ns:ops (adds to the mesh file\'s).', parse: parseAllowSetting }),
  discoveryTimeout: defaulted<number>({ env: 'REMORA_DISCOVERY_TIMEOUT', default: '3s', help: "How long a request for an authority this sidecar has not resolved yet waits for the control plane's answer.", parse: parseDuration }),
  outboundPolicy: defaulted<'allow-any' | 'registry-only'>({ env: 'REMORA_OUTBOUND_POLICY', default: 'allow-any', help: 'A destination that is not in the mesh: allow-any passes it through untouched (L4 metrics, access log); registry-only refuses it.', parse: oneOf('allow-any', 'registry-only') }),
  opaquePorts: defaulted<readonly number[]>({ env: 'REMORA_OPAQUE_PORTS', default: SERVER_FIRST_PORTS, help: 'Ports carried as opaque TCP with no protocol detection (server-speaks-first protocols: SMTP, MySQL/MariaDB, NATS, FTP, POP3, IMAP); ranges as 9000-9010. Replaces the default list: keep the ports you still need.', parse: (raw: string) => Object.freeze(portsOf(parsePortList(raw))) }),
  detectTimeout: defaulted<number>({ env: 'REMORA_DETECT_TIMEOUT', default: '1s', help: 'How long a redirected connection on any other port may stay silent before it is carried as opaque TCP (counted and logged once per port).', parse: parseDuration }),
  tcpIdleTimeout: defaulted<number>({ env: 'REMORA_TCP_IDLE_TIMEOUT', default: '1h', help: 'An opaque TCP connection with no bytes either way for this long is closed (0 = never).', parse: parseDuration }),
  annotationsFile: optional<string>({ env: 'REMORA_ANNOTATIONS_FILE', help: 'Downward-API file of the pod annotations; remora.dev/<option> there sets an option, e.g. remora.dev/opaque-ports (flags and env win).', parse: text, annotation: false }),
  podName: optional<string>({ env: 'REMORA_POD_NAME', help: "This pod's name (the injector sets it from the downward API, metadata.name); the traces' k8s.pod.name.", parse: text }),
  podNamespace: optional<string>({ env: 'REMORA_POD_NAMESPACE', help: "This pod's namespace (downward API, metadata.namespace); the traces' service.namespace and k8s.namespace.name. Default: the mesh file workload's namespace, else REMORA_IDENTITY's.", parse: text }),
  nodeName: optional<string>({ env: 'REMORA_NODE_NAME', help: "The node the pod runs on (downward API, spec.nodeName); the traces' k8s.node.name.", parse: text }),
  discoveryIdle: defaulted<number>({ env: 'REMORA_DISCOVERY_IDLE', default: '10m', help: 'A watched authority no request has used for this long is dropped from the table (watched again on next use).', parse: parseDuration }),
  appProbes: optional<AppProbes>({ env: 'REMORA_APP_PROBES', help: 'The app\'s httpGet/tcpSocket probes, which the injector rewrote to GET /app-health/<container>/<kind> on the admin port (strict mTLS would refuse kubelet on the app port), as JSON: {"<container>/<liveness|readiness|startup>": {"port": 8080, "path": "/healthz", "scheme": "HTTP", "headers": [{"name": "x", "value": "y"}]} or {"port": 8080, "tcp": true}}. Set by the injector.', parse: parseAppProbes, annotation: false }),
  upgrades: defaulted<readonly string[]>({ env: 'REMORA_UPGRADES', default: 'websocket', help: 'HTTP/1.1 Upgrade protocols passed to the app, comma-separated (e.g. websocket,connect-udp). Any other upgrade, h2c always (it cannot be enabled), and an upgrade request with a body go on as plain requests without Upgrade; an empty value allows none.', parse: parseUpgrades }),
  downstreamIdleTimeout: defaulted<number>({ env: 'REMORA_DOWNSTREAM_IDLE_TIMEOUT', default: '1h', help: 'An HTTP/2 client connection (app, non-meshed client or peer sidecar) with no stream open for this long is sent GOAWAY and closed (0s = never). Longer than the 10 minutes after which a sidecar closes its own idle connections to peers, so a peer closes first.', parse: parseDuration }),
  drainTimeout: defaulted<number>({ env: 'REMORA_DRAIN_TIMEOUT', default: '5s', help: 'An HTTP/2 client connection still open this long after the sidecar sent it GOAWAY for being idle, or after it left a PING unanswered, is destroyed.', parse: parseDuration }),
  downstreamPingInterval: defaulted<number>({ env: 'REMORA_DOWNSTREAM_PING_INTERVAL', default: '10s', help: 'An HTTP/2 client connection with no frame either way for this long is sent a PING; without an answer within REMORA_DRAIN_TIMEOUT it is closed (a client gone without a FIN, or a connection HTTP/2 already refused with GOAWAY: node stops reading such a connection without a word, and this is how it is found). 10 s, as Linkerd\'s proxy keeps its HTTP/2 servers alive; 0s = never.', parse: parseDuration }),
  maxConcurrentStreams: defaulted<number>({ env: 'REMORA_MAX_CONCURRENT_STREAMS', default: '250', help: 'Concurrent HTTP/2 streams one connection from the app (outbound) or a non-meshed client (inbound h2c) may have open; beyond it streams are refused with REFUSED_STREAM (safe to retry).', parse: positiveInteger }),
  peerMaxConcurrentStreams: defaulted<number>({ env: 'REMORA_PEER_MAX_CONCURRENT_STREAMS', default: '2000', help: 'Concurrent HTTP/2 streams one peer sidecar\'s mTLS connection may have open (a peer carries all its requests to this pod on one connection); beyond it REFUSED_STREAM.', parse: positiveInteger }),
  maxStreamResets: defaulted<number>({ env: 'REMORA_MAX_STREAM_RESETS', default: '100', help: 'HTTP/2 streams one connection from the app or a non-meshed client may cancel (RST_STREAM CANCEL before the response) within 10 s; beyond it, when the cancelled streams are also more than half of the streams it opened in those 10 s, the connection is sent GOAWAY ENHANCE_YOUR_CALM and closed (rapid reset), counted as remora_h2_reset_floods_total. A peer sidecar\'s connection may cancel ten times as many.', parse: positiveInteger }),
  requestHeadersTimeout: defaulted<number>({ env: 'REMORA_REQUEST_HEADERS_TIMEOUT', default: '10s', help: 'An HTTP/1.1 request whose header has not fully arrived this long after its first byte (on a new or a kept-alive connection) is answered 408 and its connection closed, counted as remora_downstream_timeouts_total{kind="headers"} (0s = never). An idle kept-alive connection is not affected.', parse: parseDuration }),
  http1IdleTimeout: defaulted<number>({ env: 'REMORA_HTTP1_IDLE_TIMEOUT', default: '65s', help: 'An HTTP/1.1 client connection (app or non-meshed client) idle between requests this long is closed (node\'s keepAliveTimeout; longer than the 60 s after which common load balancers and client pools drop theirs, so the client closes first). Not counted: closing an idle keep-alive connection is routine.', parse: parseDuration }),
  maxConnections: defaulted<number>({ env: 'REMORA_MAX_CONNECTIONS', default: '20000', help: 'Connections each listener (outbound, inbound) keeps open at once; one more is closed on arrival, counted as remora_downstream_connections_over_limit_total and logged at most once a minute. Bounds the memory a connection flood can take.', parse: positiveInteger }),
  requestBodyTimeout: defaulted<number>({ env: 'REMORA_REQUEST_BODY_TIMEOUT', default: '20s', help: 'A request body from the app or from a client outside the mesh (not gRPC, not a peer sidecar) has this long from its first read; after it, one more second for every REMORA_REQUEST_BODY_MIN_RATE bytes received (Apache mod_reqtimeout\'s body=20,MinRate=500). A body that falls behind is answered 408 (or its stream reset, once answered), the upstream request cancelled, counted as remora_downstream_timeouts_total{kind="body"}. With a min rate of 0 it bounds the whole body; 0s = no limit.', parse: parseDuration }),
  requestBodyMinRate: defaulted<number>({ env: 'REMORA_REQUEST_BODY_MIN_RATE', default: '500', help: 'Bytes per second a request body must average after REMORA_REQUEST_BODY_TIMEOUT to keep going (0: the timeout bounds the whole body).', parse: nonNegativeInteger }),
})

export type CaSetting = { readonly kind: 'off' } | { readonly kind: 'dev' | 'files', readonly dir: string } | { readonly kind: 'secret', readonly namespace: string, readonly name: string }

export function parseCaSetting (raw: string): CaSetting {
  const v = raw.trim()
  if (v === 'off') return Object.freeze({ kind: 'off' })
  const m = /^(dev|files|secret):(.+)$/.exec(v)
  if (m === null) throw new Error(`expected off, dev:<dir>, files:<dir> or secret:<namespace>/<name>, got "${raw}"`)
  if (m[1] !== 'secret') return Object.freeze({ kind: m[1] as 'dev' | 'files', dir: m[2] })
  const s = /^([a-z0-9-]+)\/([a-z0-9.-]+)$/.exec(m[2])
  if (s === null) throw new Error(`secret: needs <namespace>/<name>, got "${m[2]}"`)
  return Object.freeze({ kind: 'secret', namespace: s[1], name: s[2] })
}

export const CONTROL_SOURCES = ['kubernetes', 'file'] as const
export type ControlSource = typeof CONTROL_SOURCES[number]

export const ControlSettings = Object.freeze({
  source: optional<ControlSource>({ env: 'REMORA_SOURCE', help: 'Where services come from: kubernetes (Services + EndpointSlices, via KUBECONFIG or the in-cluster account) or file. Default: file when REMORA_MESH_FILE is set, else kubernetes.', parse: oneOf(...CONTROL_SOURCES) }),
  meshFile: optional<string>({ env: 'REMORA_MESH_FILE', help: 'With the file source: the mesh YAML file whose services are served. Reloaded on change.', parse: text }),
  discoveryAddr: defaulted<HostPort>({ env: 'REMORA_DISCOVERY_ADDR', default: '0.0.0.0:15012', help: 'Discovery API (HTTP/2) that sidecars watch.', parse: parseHostPort }),
  adminAddr: defaulted<HostPort>({ env: 'REMORA_ADMIN_ADDR', default: '0.0.0.0:15014', help: 'Admin server of the control plane: /live /ready /metrics; /catalog.json from loopback only.', parse: parseHostPort }),
  ca: defaulted<CaSetting | { readonly kind: 'secret-or-create', readonly namespace: string, readonly name: string }>({
    env: 'REMORA_CA',
    default: 'off',
    help: 'Certificate authority: off (plaintext discovery, no certificates), dev:<dir> (load, or create on first start, a development CA in dir), files:<dir> (root.pem, issuer.pem, issuer-key.pem), secret:<namespace>/<name> (a Kubernetes Secret with those keys, or the ca.crt, tls.crt, tls.key of a cert-manager Certificate; only read), or secret-or-create:<namespace>/<name> (that Secret, created once with a new CA when absent).',
    // secret-or-create: is read here, not in parseCaSetting: the kind only the control plane knows.
    parse: (raw: string) => {
      const m = /^\s*secret-or-create:(.*)$/s.exec(raw)
      if (m === null) {
        try {
          return parseCaSetting(raw)
        } catch (err) {
          throw new Error((err as Error).message.replace('files:<dir> or secret:<namespace>/<name>', 'files:<dir>, secret:<namespace>/<name> or secret-or-create:<namespace>/<name>'), { cause: err })
        }
      }
      const s = /^([a-z0-9-]+)\/([a-z0-9.-]+)$/.exec(m[1].trim())
      if (s === null) throw new Error(`secret-or-create: needs <namespace>/<name>, got "${m[1]}"`)
      return Object.freeze({ kind: 'secret-or-create' as const, namespace: s[1], name: s[2] })
    },
  }),
  trustAnchorsConfigmap: defaulted<string | undefined>({ env: 'REMORA_TRUST_ANCHORS_CONFIGMAP', default: 'remora-trust-anchors', help: "With a CA and the Kubernetes source: the ConfigMap (key root.pem, the CA's roots) the control plane keeps in every namespace labelled or annotated remora.dev/inject=enabled, for the injected sidecars to mount; off: publish none.", parse: (raw: string) => { const v = raw.trim(); if (v === 'off') return undefined; if (!isObjectName(v)) throw new Error(`expected a ConfigMap name (lower-case letters, digits, "-", ".") or off, got "${raw}"`); return v } }),
  certTtl: defaulted<number>({ env: 'REMORA_CERT_TTL', default: '24h', help: 'Lifetime of the workload certificates the CA signs (sidecars renew at 70 %).', parse: parseDuration }),
  servingNames: defaulted<readonly string[]>({ env: 'REMORA_SERVING_NAMES', default: 'localhost,127.0.0.1,remora-control.remora-system.svc,remora-control.remora-system.svc.cluster.local', help: 'DNS names and IPs in the certificate the discovery port serves (sidecars check REMORA_CONTROL_ADDR against it).', parse: (raw: string) => Object.freeze(raw.split(',').map((n) => n.trim()).filter((n) => n !== '')) }),
  trustDomain: defaulted<string>({ env: 'REMORA_TRUST_DOMAIN', default: 'cluster.local', help: 'SPIFFE trust domain of the identities in the table (Kubernetes source).', parse: text }),
  proxyInboundPort: defaulted<number>({ env: 'REMORA_PROXY_INBOUND_PORT', default: '15006', help: "Port of every pod's sidecar inbound listener (Kubernetes source).", parse: parsePort }),
  injectorAddr: defaulted<HostPort | undefined>({ env: 'REMORA_INJECTOR_ADDR', default: '0.0.0.0:15017', help: "With a CA and the Kubernetes source: the admission webhook (HTTPS) that adds the sidecar to pods created in namespaces labelled remora.dev/inject=enabled, with a certificate from the CA, renewed; the MutatingWebhookConfiguration remora-injector gets the CA's root as its caBundle. Mesh-wide settings as remora inject's (REMORA_PROXY_IMAGE, REMORA_CONTROL_ADDR, REMORA_OTLP_ENDPOINT, …). off: none (remora injector serves it instead).", parse: (raw: string) => raw.trim() === 'off' ? undefined : parseHostPort(raw) }),
  injectorNames: defaulted<readonly string[]>({ env: 'REMORA_INJECTOR_NAMES', default: 'remora-injector.remora-system.svc,remora-injector.remora-system.svc.cluster.local', help: "DNS names in the admission webhook's certificate: the Service the MutatingWebhookConfiguration calls.", parse: (raw: string) => Object.freeze(raw.split(',').map((n) => n.trim()).filter((n) => n !== '')) }),
  logLevel: defaulted<LogLevel>({ env: 'REMORA_LOG_LEVEL', default: 'info', help: `Log level: ${LOG_LEVELS.join(', ')}.`, parse: oneOf(...LOG_LEVELS) }),
})

/** What readSettings gives: a setting with a default always has its value; the others may be unset. */
export type SettingsOf<S extends Record<string, Setting<unknown>>> = {
  readonly [K in keyof S]: S[K] extends DefaultedSetting<infer T> ? T : S[K] extends Setting<infer T> ? T | undefined : never
}

const given = (v: string | undefined): string | undefined => v !== undefined && v !== '' ? v : undefined

/**
 * Reads settings from flags (highest), then the environment, then pod annotations (when given), then
 * defaults. An invalid value throws naming the variable, flag or annotation and what is expected.
 */
export function readSettings<S extends Record<string, Setting<unknown>>> (
  settings: S, env: Environment, flags: ReadonlyMap<string, string>, annotations?: Annotations,
): SettingsOf<S> {
  const out: Record<string, unknown> = {}
  const known = new Set(Object.values(settings).map(flagOf))
  for (const flag of flags.keys()) {
    if (!known.has(flag)) {
      throw new RemoraError('REMORA_CONFIG_FLAG', `unknown option ${flag}; see --help for the options of this role`)
    }
  }
  for (const [key, s] of Object.entries(settings)) {
    const flag = flagOf(s)
    const fromFlag = flags.get(flag)
    const fromEnv = given(env[s.env])
    const fromAnnotation = s.annotation === false ? undefined : given(annotations?.values.get(annotationOf(s)))
    const raw = fromFlag ?? fromEnv ?? fromAnnotation ?? s.default
    if (raw === undefined) { out[key] = undefined; continue }
    try {
      out[key] = s.parse(raw)
    } catch (err) {
      const [code, where] = fromFlag !== undefined
        ? ['REMORA_CONFIG_FLAG', `option ${flag}`] as const
        : fromEnv !== undefined
          ? ['REMORA_CONFIG_ENV', `environment variable ${s.env}`] as const
          : fromAnnotation !== undefined
            ? ['REMORA_CONFIG_ANNOTATION', `annotation ${annotationOf(s)} in ${annotations?.file}`] as const
            : ['REMORA_CONFIG_ENV', `default of ${s.env}`] as const
      throw new RemoraError(code, `${where}: ${(err as Error).message}`)
    }
  }
  return out as SettingsOf<S>
}

/** The pod annotations in the downward-API file that `fileSetting` names by flag or variable; none when unset. */
export function podAnnotations (fileSetting: Setting<string>, env: Environment, flags: ReadonlyMap<string, string>): Annotations | undefined {
  const file = flags.get(flagOf(fileSetting)) ?? given(env[fileSetting.env])
  return file === undefined ? undefined : readAnnotationsFile(file)
}

/** Was this setting given explicitly (flag, env or annotation), not just defaulted? */
export function isExplicit (s: Setting<unknown>, env: Environment, flags: ReadonlyMap<string, string>, annotations?: Annotations): boolean {
  return flags.has(flagOf(s)) || given(env[s.env]) !== undefined ||
    (s.annotation !== false && given(annotations?.values.get(annotationOf(s))) !== undefined)
}

export function settingsHelp (settings: Record<string, Setting<unknown>>): string {
  return Object.values(settings).map((s) => {
    const def = s.default !== undefined ? ` (default ${s.default})` : ''
    return `  ${flagOf(s).padEnd(20)} ${s.env.padEnd(24)} ${s.help}${def}`
  }).join('\n')
}

/** A numeric user or group ID, as the kernel's owner match takes it. */
function parseId (raw: string): number {
  const v = raw.trim()
  if (!/^\d{1,10}$/.test(v) || Number(v) > 4294967294) throw new Error(`expected a numeric user or group ID, got "${raw}"`)
  return Number(v)
}

export const IPTABLES_BACKENDS = ['auto', 'nft', 'legacy'] as const
export const IPV6_MODES = ['auto', 'on', 'off'] as const

/** `remora init`: each also a pod annotation (annotationOf), read from REMORA_ANNOTATIONS_FILE. */
export const InitSettings = Object.freeze({
  proxyUid: defaulted<number>({ env: 'REMORA_PROXY_UID', default: '2102', help: "UID the proxy runs as; its own connections are never redirected.", parse: parseId }),
  proxyGid: optional<number>({ env: 'REMORA_PROXY_GID', help: 'GID whose connections are never redirected either (optional).', parse: parseId }),
  inboundPort: defaulted<number>({ env: 'REMORA_INBOUND_PORT', default: '15006', help: "Port of the proxy's inbound listener: inbound TCP is redirected there.", parse: parsePort }),
  outboundPort: defaulted<number>({ env: 'REMORA_OUTBOUND_PORT', default: '15001', help: "Port of the proxy's outbound listener: the workload's outgoing TCP is redirected there.", parse: parsePort }),
  adminPort: defaulted<number>({ env: 'REMORA_ADMIN_PORT', default: '15000', help: "The proxy's admin port: never redirected inbound (probes, metrics).", parse: parsePort }),
  skipInboundPorts: optional<readonly PortRange[]>({ env: 'REMORA_SKIP_INBOUND_PORTS', help: 'Inbound ports not redirected: 8080,9000:9100 (ranges a:b or a-b).', parse: parsePortList }),
  skipOutboundPorts: optional<readonly PortRange[]>({ env: 'REMORA_SKIP_OUTBOUND_PORTS', help: 'Outbound destination ports not redirected, e.g. 5432,6379.', parse: parsePortList }),
  skipOutboundCidrs: optional<readonly Cidr[]>({ env: 'REMORA_SKIP_OUTBOUND_CIDRS', help: 'Outbound destinations not redirected: IPv4/IPv6 CIDRs or addresses, e.g. the Kubernetes API 10.96.0.1.', parse: parseCidrList }),
  iptables: defaulted<typeof IPTABLES_BACKENDS[number]>({ env: 'REMORA_IPTABLES', default: 'auto', help: 'iptables backend: nft, legacy, or auto (the one already holding rules, else nft when it works, else legacy).', parse: oneOf(...IPTABLES_BACKENDS) }),
  ipv6: defaulted<typeof IPV6_MODES[number]>({ env: 'REMORA_IPV6', default: 'auto', help: 'IPv6 rules too: on, off, or auto (when the kernel has IPv6 and ip6tables nat works).', parse: oneOf(...IPV6_MODES) }),
  annotationsFile: optional<string>({ env: 'REMORA_ANNOTATIONS_FILE', help: 'Downward-API file of the pod annotations; remora.dev/<option> there sets an option (flags and env win).', parse: text, annotation: false }),
})

function positiveInteger (raw: string): number {
  const v = Number(raw.trim())
  if (!Number.isInteger(v) || v < 1 || v > 2 ** 31 - 1) throw new Error(`expected a whole number from 1 to 2147483647, got "${raw}"`)
  return v
}

function nonNegativeInteger (raw: string): number {
  const v = Number(raw.trim())
  if (raw.trim() === '' || !Number.isInteger(v) || v < 0 || v > 2 ** 31 - 1) throw new Error(`expected a whole number from 0 to 2147483647, got "${raw}"`)
  return v
}

/** An HTTP(S) URL, as OTLP/HTTP endpoints are written. */
function httpUrl (raw: string): string {
  const v = raw.trim()
  let url: URL
  try { url = new URL(v) } catch { throw new Error(`expected an http:// or https:// URL such as http://jaeger-collector.remora-system.svc:4318, got "${raw}"`) }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`expected an http:// or https:// URL, got "${raw}"`)
  return v
}

/** Upgrade protocol names (tokens, lower-cased); h2c would take the connection out of the proxy's sight. */
function parseUpgrades (raw: string): readonly string[] {
  const names = raw.split(',').map((n) => n.trim().toLowerCase()).filter((n) => n !== '')
  for (const n of names) {
    if (!/^[!#$%&'*+.^_`|~0-9a-z-]+(\/[!#$%&'*+.^_`|~0-9a-z-]+)?$/.test(n)) throw new Error(`expected upgrade protocol names such as websocket, got "${n}"`)
    if (n === 'h2c') throw new Error('h2c upgrades are never passed on: the HTTP/2 connection inside would bypass access logs, authorization and metrics')
  }
  return Object.freeze(names)
}

/** A container image reference: no spaces, not empty (the registry checks the rest). */
function imageRef (raw: string): string {
  const v = raw.trim()
  if (v === '' || /\s/.test(v)) throw new Error(`expected a container image such as ghcr.io/remora-mesh/remora:0.1.0, got "${raw}"`)
  return v
}

/** A Kubernetes object name (RFC 1123 subdomain), e.g. a ConfigMap's. */
function objectName (raw: string): string {
  const v = raw.trim()
  if (!isObjectName(v)) throw new Error(`expected a Kubernetes object name (lower-case letters, digits, "-", "."), got "${raw}"`)
  return v
}

/** `key=value,key=value` (annotations as kubectl annotate takes them); a key without "=" is an error. */
function keyValues (raw: string): Readonly<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const entry of raw.split(',').map((e) => e.trim()).filter((e) => e !== '')) {
    const eq = entry.indexOf('=')
    if (eq <= 0) throw new Error(`expected key=value pairs separated by commas (remora.dev/inject=disabled), got "${entry}"`)
    out[entry.slice(0, eq).trim()] = entry.slice(eq + 1).trim()
  }
  return Object.freeze(out)
}

/**
 * `remora inject` (and the injector after it): what every injected pod gets, mesh-wide. A setting that is not
 * `annotation: false` may be overridden per pod by its annotation (annotationOf: REMORA_PROXY_IMAGE ↔
 * remora.dev/proxy-image); there the annotation wins, since it is the more specific.
 */
export const InjectSettings = Object.freeze({
  proxyImage: defaulted<string>({ env: 'REMORA_PROXY_IMAGE', default: 'ghcr.io/remora-mesh/remora:0.1.0', help: 'Image of the injected remora-init and remora-proxy containers.', parse: imageRef }),
  controlAddr: defaulted<string>({ env: 'REMORA_CONTROL_ADDR', default: 'remora-control.remora-system.svc:15012', help: 'The control plane as the injected sidecars reach it, host:port (their REMORA_CONTROL_ADDR).', parse: (raw: string) => { parseHostPort(raw); return raw.trim() }, annotation: false }),
  otlpEndpoint: optional<string>({ env: 'REMORA_OTLP_ENDPOINT', help: "OTLP/HTTP collector the injected sidecars export traces to (their OTEL_EXPORTER_OTLP_ENDPOINT), e.g. http://jaeger-collector.remora-system.svc:4318. Default: none, no traces exported.", parse: httpUrl, annotation: false }),
  trustDomain: defaulted<string>({ env: 'REMORA_TRUST_DOMAIN', default: 'cluster.local', help: "SPIFFE trust domain of the injected sidecars' identities (spiffe://<trust-domain>/ns/<ns>/sa/<sa>).", parse: (raw: string) => checkTrustDomain(raw.trim()), annotation: false }),
  trustAnchorsConfigMap: defaulted<string>({ env: 'REMORA_TRUST_ANCHORS_CONFIGMAP', default: 'remora-trust-anchors', help: "ConfigMap, in each meshed namespace, whose root.pem is the mesh's trust anchor (mounted into every sidecar).", parse: objectName, annotation: false }),
  proxyCpuRequest: defaulted<string>({ env: 'REMORA_PROXY_CPU_REQUEST', default: '50m', help: "The sidecar's CPU request (a Kubernetes quantity).", parse: parseQuantity }),
  proxyMemoryRequest: defaulted<string>({ env: 'REMORA_PROXY_MEMORY_REQUEST', default: '64Mi', help: "The sidecar's memory request.", parse: parseQuantity }),
  proxyMemoryLimit: defaulted<string>({ env: 'REMORA_PROXY_MEMORY_LIMIT', default: '256Mi', help: "The sidecar's memory limit.", parse: parseQuantity }),
  sidecarMode: defaulted<'native' | 'container'>({ env: 'REMORA_SIDECAR_MODE', default: 'native', help: 'native: the proxy is an init container with restartPolicy Always (Kubernetes 1.29+: starts before the app, stops after it, Jobs complete). container: for older clusters, the first app container, holding the others until it is ready (postStart); Jobs then need the app to POST 127.0.0.1:15000/shutdown when done.', parse: oneOf('native', 'container'), annotation: false }),
  namespaceAnnotations: optional<Readonly<Record<string, string>>>({ env: 'REMORA_NAMESPACE_ANNOTATIONS', help: 'Offline, there is no Namespace object: its annotations as key=value,… (only remora.dev/inject counts; a workload\'s own wins).', parse: keyValues, annotation: false }),
})

/** `remora check`: which cluster, which install and which pods it looks at, and how it reports. */
export const CheckSettings = Object.freeze({
  kubeconfig: optional<string>({ env: 'REMORA_KUBECONFIG', help: 'The kubeconfig file (its current context). Default: KUBECONFIG, ~/.kube/config, or the in-cluster service account, as kubectl.', parse: text, annotation: false }),
  namespace: optional<string>({ env: 'REMORA_NAMESPACE', help: 'With --proxy: the namespace whose pods are checked. Default: every namespace.', parse: objectName, annotation: false }),
  pod: optional<string>({ env: 'REMORA_POD', help: 'With --proxy and --namespace: only this pod.', parse: objectName, annotation: false }),
  output: defaulted<'text' | 'json'>({ env: 'REMORA_OUTPUT', default: 'text', help: 'text (a line per check: √ passed, ‼ warning, × failed) or json.', parse: oneOf('text', 'json'), annotation: false }),
  controlNamespace: defaulted<string>({ env: 'REMORA_CONTROL_NAMESPACE', default: 'remora-system', help: 'The namespace remora is installed in.', parse: objectName, annotation: false }),
  caSecret: defaulted<string>({ env: 'REMORA_CA_SECRET', default: 'remora-ca', help: "The control plane's CA Secret, in that namespace.", parse: objectName, annotation: false }),
  trustDomain: defaulted<string>({ env: 'REMORA_TRUST_DOMAIN', default: 'cluster.local', help: "The mesh's SPIFFE trust domain (the CA's certificates may name no other).", parse: (raw: string) => checkTrustDomain(raw.trim()), annotation: false }),
  webhookUrl: optional<string>({ env: 'REMORA_WEBHOOK_URL', help: "The injector through a port-forward, e.g. https://127.0.0.1:15017: its serving certificate is verified against the webhook's caBundle. Default: not checked (it is reachable only inside the cluster).", parse: httpUrl, annotation: false }),
  timeout: defaulted<number>({ env: 'REMORA_TIMEOUT', default: '10s', help: 'How long each request to the API server may take.', parse: parseDuration, annotation: false }),
})
