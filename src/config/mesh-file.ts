// Reads the local mesh YAML file: parse, validate against the schema, resolve references, freeze.
// Every error names the file, line, column and key, and says what is expected.
import { isIP } from 'node:net'
import { readFileSync } from 'node:fs'
import { Ajv, type ErrorObject } from 'ajv'
import { LineCounter, parseDocument, isNode, type Document } from 'yaml'
import { RemoraError } from '../errors.ts'
import { parseHostPort } from '../parse/host-port.ts'
import type { HostPort } from '../mesh/host-port.ts'
import { meshSchema } from './mesh-schema.ts'
import { deepFreeze } from './deep-freeze.ts'
import { authoritiesOf, serviceKeyOf, type AppProtocol, type Endpoint, type Service } from '../mesh/service.ts'
import { spiffeId } from '../mesh/spiffe-id.ts'
import { servicePolicy, inboundPolicy, type RawInboundPolicy, type RawServicePolicy } from '../resilience/policy-file.ts'
import type { InboundPolicy } from '../mesh/policy.ts'
import { parseAllowRule } from '../parse/allow-list.ts'
import type { AllowRule, DefaultPolicy } from '../mesh/authorization.ts'

export interface AppPort { readonly port: number, readonly protocol: AppProtocol }

export interface Workload {
  readonly name: string
  readonly namespace: string
  readonly serviceAccount: string
  readonly identity: string
  readonly appPorts: readonly AppPort[]
  readonly sidecar: { readonly inbound?: HostPort, readonly outbound?: HostPort, readonly admin?: HostPort }
  readonly inbound: InboundPolicy
  /** Proves this workload's identity to a control plane serving this file (local mode). */
  readonly bootstrapToken: string | undefined
  readonly authorization: { readonly default?: DefaultPolicy, readonly allow: Readonly<Record<number, readonly AllowRule[]>> }
}

export interface MeshConfig {
  readonly file: string
  readonly trustDomain: string
  readonly workloads: Readonly<Record<string, Workload>>
  readonly services: readonly Service[]
}

interface RawMesh {
  trustDomain?: string
  workloads?: Record<string, {
    namespace?: string, serviceAccount?: string
    appPorts: Array<number | { port: number, protocol?: AppProtocol }>
    sidecar?: { inbound?: string, outbound?: string, admin?: string }
    inbound?: RawInboundPolicy
    bootstrapToken?: string
    authorization?: { default?: DefaultPolicy, allow?: Record<string, string[]> }
  }>
  services?: Array<RawServicePolicy & {
    name: string, namespace?: string, port: number, protocol?: AppProtocol, addresses?: string[]
    endpoints: Array<{ workload?: string, address?: string, targetPort: number, weight?: number, identity?: string }>
  }>
}

const ajv = new Ajv({ allErrors: true, strict: false, verbose: true })
const validate = ajv.compile(meshSchema)

export function readMeshFile (file: string): MeshConfig {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new RemoraError('REMORA_MESH_FILE_READ', `cannot read mesh file ${file}: ${(err as Error).message}`, { cause: err })
  }
  return parseMesh(text, file)
}

export function parseMesh (text: string, file: string): MeshConfig {
  const lines = new LineCounter()
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true })
  if (doc.errors.length > 0) {
    const e = doc.errors[0]
    const pos = lines.linePos(e.pos[0])
    throw new RemoraError('REMORA_MESH_FILE_YAML', `${file}:${pos.line}:${pos.col}: not valid YAML: ${e.message.split('\n')[0]}`)
  }
  const raw = (doc.toJS() ?? {}) as RawMesh
  if (!validate(raw)) {
    const messages = pickErrors(validate.errors ?? []).map((e) => describe(e, doc, lines, file))
    throw new RemoraError('REMORA_MESH_FILE_SCHEMA', messages.join('\n'))
  }
  return deepFreeze(resolve(raw, file, doc, lines))
}

/** Ajv reports every branch of a oneOf; keep the specific errors, once each, at most five. */
function pickErrors (errors: ErrorObject[]): ErrorObject[] {
  const seen = new Map<string, ErrorObject>()
  for (const e of errors) {
    if (e.keyword === 'oneOf' && errors.some((o) => o !== e && o.keyword !== 'oneOf' && o.instancePath.startsWith(e.instancePath) && o.instancePath !== e.instancePath)) continue
    const key = `${e.instancePath} ${e.keyword} ${JSON.stringify(e.params)}`
    if (!seen.has(key)) seen.set(key, e)
  }
  return [...seen.values()].slice(0, 5)
}

function pathOf (instancePath: string): Array<string | number> {
  return instancePath.split('/').slice(1).map((p) => /^\d+$/.test(p) ? Number(p) : p.replace(/~1/g, '/').replace(/~0/g, '~'))
}

function keyName (path: Array<string | number>): string {
  return path.map((p, i) => typeof p === 'number' ? `[${p}]` : (i === 0 ? p : `.${p}`)).join('') || '(top level)'
}

function where (doc: Document, lines: LineCounter, path: Array<string | number>): string {
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n), true)
    if (isNode(node) && node.range) {
      const pos = lines.linePos(node.range[0])
      return `${pos.line}:${pos.col}`
    }
  }
  return '1:1'
}

function describe (e: ErrorObject, doc: Document, lines: LineCounter, file: string): string {
  const path = pathOf(e.instancePath)
  let what = e.message ?? 'is invalid'
  if (e.keyword === 'additionalProperties') {
    const extra = (e.params as { additionalProperty: string }).additionalProperty
    path.push(extra)
    what = 'is not a known key (check the spelling; see docs/mesh-file.md)'
  } else if (e.keyword === 'required') {
    what = `needs key "${(e.params as { missingProperty: string }).missingProperty}"`
  } else if (e.keyword === 'enum') {
    what = `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.join(', ')}`
  } else if (e.keyword === 'pattern' || e.keyword === 'maxLength') {
    const description = (e.parentSchema as { description?: string } | undefined)?.description
    what = `must be ${description ?? `text matching ${(e.params as { pattern: string }).pattern}`}, not ${JSON.stringify(e.data)}`
  } else if (e.keyword === 'oneOf' && path.at(-2) === 'endpoints') {
    what = 'needs exactly one of "workload" (a workload in this file) or "address" (host:port of a peer sidecar)'
  }
  return `${file}:${where(doc, lines, path)}: ${keyName(path)} ${what}`
}

function resolve (raw: RawMesh, file: string, doc: Document, lines: LineCounter): MeshConfig {
  const trustDomain = raw.trustDomain ?? 'cluster.local'
  const workloads: Record<string, Workload> = {}
  for (const [name, w] of Object.entries(raw.workloads ?? {})) {
    const namespace = w.namespace ?? 'default'
    const serviceAccount = w.serviceAccount ?? name
    workloads[name] = {
      name,
      namespace,
      serviceAccount,
      identity: spiffeId(trustDomain, namespace, serviceAccount),
      appPorts: w.appPorts.map((p) => typeof p === 'number' ? { port: p, protocol: 'auto' } : { port: p.port, protocol: p.protocol ?? 'auto' }),
      sidecar: {
        inbound: w.sidecar?.inbound !== undefined ? parseHostPort(w.sidecar.inbound) : undefined,
        outbound: w.sidecar?.outbound !== undefined ? parseHostPort(w.sidecar.outbound) : undefined,
        admin: w.sidecar?.admin !== undefined ? parseHostPort(w.sidecar.admin) : undefined,
      },
      inbound: inboundPolicy(w.inbound),
      bootstrapToken: w.bootstrapToken,
      authorization: { default: w.authorization?.default, allow: {} },
    }
  }
  const fail = (path: Array<string | number>, what: string): never => {
    throw new RemoraError('REMORA_MESH_FILE_REFERENCE', `${file}:${where(doc, lines, path)}: ${keyName(path)} ${what}`)
  }
  const tokens = new Map<string, string>()
  for (const [name, w] of Object.entries(raw.workloads ?? {})) {
    const allow = workloads[name].authorization.allow as Record<number, AllowRule[]>
    for (const [port, rules] of Object.entries(w.authorization?.allow ?? {})) {
      allow[Number(port)] = rules.map((r, i) => {
        try { return parseAllowRule(r) } catch (err) { return fail(['workloads', name, 'authorization', 'allow', port, i], (err as Error).message) }
      })
    }
    if (w.bootstrapToken !== undefined) {
      const other = tokens.get(w.bootstrapToken)
      if (other !== undefined) fail(['workloads', name, 'bootstrapToken'], `is the same as workload "${other}"'s; each workload needs its own`)
      tokens.set(w.bootstrapToken, name)
    }
  }
  const seen = new Map<string, number>()
  const services: Service[] = (raw.services ?? []).map((s, i) => {
    const namespace = s.namespace ?? 'default'
    const key = serviceKeyOf(s.name, namespace, s.port)
    const other = seen.get(key)
    if (other !== undefined) fail(['services', i], `repeats ${key}, already defined at services[${other}]`)
    seen.set(key, i)
    ;(s.addresses ?? []).forEach((a, j) => { if (isIP(a) === 0) fail(['services', i, 'addresses', j], `is "${a}", which is not an IPv4 or IPv6 address`) })
    const endpoints = s.endpoints.map((e, j): Endpoint => {
      let address: HostPort
      let identity = e.identity
      if (e.workload !== undefined) {
        const w = workloads[e.workload]
        if (w === undefined) return fail(['services', i, 'endpoints', j, 'workload'], `names workload "${e.workload}", which is not under workloads:`)
        if (w.sidecar.inbound === undefined) return fail(['workloads', e.workload], 'needs sidecar.inbound (host:port), because services reach it as an endpoint')
        if (!w.appPorts.some((p) => p.port === e.targetPort)) {
          fail(['services', i, 'endpoints', j, 'targetPort'], `is ${e.targetPort}, which workload "${e.workload}" does not list in appPorts`)
        }
        address = w.sidecar.inbound
        identity ??= w.identity
      } else {
        address = parseHostPort(e.address as string)
      }
      return {
        address,
        targetPort: e.targetPort,
        weight: e.weight ?? 1,
        identity: identity ?? spiffeId(trustDomain, namespace, 'default'),
        key: `${address.host}:${address.port}/${e.targetPort}`,
      }
    })
    return { name: s.name, namespace, port: s.port, protocol: s.protocol ?? 'auto', key, authorities: authoritiesOf(s.name, namespace, s.port, s.addresses), endpoints, policy: servicePolicy(s) }
  })
  return { file, trustDomain, workloads, services }
}
