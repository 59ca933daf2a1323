// SPIFFE IDs of the mesh (spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>): parse and format (reading one from a certificate: svid.ts).

/** A workload identity of the mesh, the parts of `spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>`. */
export interface SpiffeIdParts {
  readonly trustDomain: string
  readonly namespace: string
  readonly serviceAccount: string
}

export function spiffeId (trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`
}

const SCHEME = 'spiffe://'
/** SPIFFE ID spec 2.3: implementations must handle 2048 bytes and should not make longer IDs. */
const MAX_ID_LENGTH = 2048
/** RFC 3986 host: at most 255 characters. */
const MAX_TRUST_DOMAIN_LENGTH = 255
// The character sets the SPIFFE libraries (go-spiffe, java-spiffe) accept: lower case trust domains, no percent-encoding.
const TRUST_DOMAIN = /^[a-z0-9._-]+$/
const PATH_SEGMENT = /^[a-zA-Z0-9._-]+$/
// Kubernetes names: a namespace is an RFC 1123 label, a service account an RFC 1123 subdomain.
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
const SHAPE = 'spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>'

/** Why `trustDomain` is not a valid SPIFFE trust domain, or undefined when it is. */
export function trustDomainProblem (trustDomain: string): string | undefined {
  if (trustDomain === '') return 'the trust domain is empty'
  if (trustDomain.length > MAX_TRUST_DOMAIN_LENGTH) return `the trust domain is longer than ${MAX_TRUST_DOMAIN_LENGTH} characters`
  if (!TRUST_DOMAIN.test(trustDomain)) {
    return `the trust domain "${trustDomain}" may hold only lower-case letters, digits, ".", "-" and "_" (no port, user or upper case)`
  }
  return undefined
}

/** Checks a trust domain (such as `cluster.local`) and returns it; throws an Error naming the problem. */
export function checkTrustDomain (trustDomain: string): string {
  const problem = typeof trustDomain === 'string' ? trustDomainProblem(trustDomain) : 'the trust domain is not a string'
  if (problem !== undefined) throw new Error(`invalid SPIFFE trust domain: ${problem}`)
  return trustDomain
}

/**
 * Checks any SPIFFE ID (SPIFFE-ID spec section 2): scheme `spiffe`, a trust domain, an optional path of non-empty
 * segments, no query, fragment, port or user. Returns the trust domain and the path segments; throws otherwise.
 */
export function checkSpiffeUri (id: string): { trustDomain: string, segments: string[] } {
  const fail = (problem: string): never => { throw new Error(`invalid SPIFFE ID ${show(id)}: ${problem}`) }
  if (typeof id !== 'string') return fail('not a string')
  if (id.length > MAX_ID_LENGTH) fail(`longer than ${MAX_ID_LENGTH} characters`)
  if (!id.startsWith(SCHEME)) fail(`it must start with "${SCHEME}"`)
  const rest = id.slice(SCHEME.length)
  const slash = rest.indexOf('/')
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash)
  const tdProblem = trustDomainProblem(trustDomain)
  if (tdProblem !== undefined) fail(tdProblem)
  if (slash === -1) return { trustDomain, segments: [] }
  const segments = rest.slice(slash + 1).split('/')
  for (const s of segments) {
    if (s === '') fail('the path has an empty segment (a doubled or trailing "/")')
    if (s === '.' || s === '..') fail(`the path may not contain "${s}" segments`)
    if (!PATH_SEGMENT.test(s)) fail(`the path segment "${s}" may hold only letters, digits, ".", "-" and "_" (no query, fragment or percent-encoding)`)
  }
  return { trustDomain, segments }
}

/** Parses a workload identity `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`; throws an Error naming what is wrong. */
export function parseSpiffeId (id: string): SpiffeIdParts {
  const { trustDomain, segments } = checkSpiffeUri(id)
  const fail = (problem: string): never => { throw new Error(`invalid SPIFFE ID ${show(id)}: ${problem}; expected ${SHAPE}`) }
  if (segments.length === 0) fail('it names only a trust domain, not a workload')
  if (segments.length !== 4 || segments[0] !== 'ns' || segments[2] !== 'sa') fail(`the path "/${segments.join('/')}" does not have the form /ns/<namespace>/sa/<service-account>`)
  const [, namespace, , serviceAccount] = segments
  const nsProblem = namespaceProblem(namespace)
  if (nsProblem !== undefined) fail(nsProblem)
  const saProblem = serviceAccountProblem(serviceAccount)
  if (saProblem !== undefined) fail(saProblem)
  return { trustDomain, namespace, serviceAccount }
}

/** Formats (and checks) a workload identity; the string is the same one `spiffeId` of discovery/service.ts makes. */
export function formatSpiffeId (parts: SpiffeIdParts): string {
  const id = spiffeId(parts.trustDomain, parts.namespace, parts.serviceAccount)
  parseSpiffeId(id)
  return id
}

/** The SPIFFE ID of a trust domain itself, `spiffe://<trust-domain>`: what the CA certificates carry. */
export function trustDomainId (trustDomain: string): string {
  return SCHEME + checkTrustDomain(trustDomain)
}

/** True when `id` is a well-formed workload identity of the mesh. */
export function isSpiffeId (id: string): boolean {
  try {
    parseSpiffeId(id)
    return true
  } catch {
    return false
  }
}

/** Why `namespace` is not a Kubernetes namespace name, or undefined. */
function namespaceProblem (namespace: string): string | undefined {
  if (namespace.length > 63 || !DNS_LABEL.test(namespace)) {
    return `the namespace "${namespace}" must be a DNS label: lower-case letters, digits and "-", at most 63`
  }
  return undefined
}

/** A Kubernetes object name (RFC 1123 subdomain: lower-case letters, digits, "-", ".", at most 253), as service accounts and ConfigMaps are named. */
export function isObjectName (name: string): boolean {
  return name.length <= 253 && DNS_SUBDOMAIN.test(name)
}

/** Why `serviceAccount` is not a Kubernetes service account name, or undefined. */
function serviceAccountProblem (serviceAccount: string): string | undefined {
  if (!isObjectName(serviceAccount)) {
    return `the service account "${serviceAccount}" must be a DNS subdomain: lower-case letters, digits, "-" and ".", at most 253`
  }
  return undefined
}

function show (value: unknown): string {
  const text = JSON.stringify(value) ?? String(value)
  return text.length > 120 ? `${text.slice(0, 117)}..."` : text
}
