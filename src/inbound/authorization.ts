// Who may call this workload, per inbound port: a default policy plus allow lists of SPIFFE IDs and
// namespaces, checked against the caller's verified identity (undefined for a plaintext caller).
import { parseSpiffeId } from '../identity/spiffe.ts'

export const DEFAULT_POLICIES = ['all-authenticated', 'all-unauthenticated', 'deny'] as const
export type DefaultPolicy = typeof DEFAULT_POLICIES[number]

export type AllowRule = { readonly identity: string } | { readonly namespace: string }

export interface AuthorizationPolicy {
  /** For ports without an allow list. */
  readonly default: DefaultPolicy
  /** Ports with an allow list admit only the callers it names (mTLS required). */
  readonly allow: Readonly<Record<number, readonly AllowRule[]>>
}

export interface Decision {
  readonly allowed: boolean
  /** The rule that decided, for the log line and the metric: `default all-authenticated`, `port 8080 allow ns:demo`, … */
  readonly rule: string
}

export function authorize (policy: AuthorizationPolicy, port: number, caller: string | undefined): Decision {
  const rules = policy.allow[port]
  if (rules !== undefined) {
    if (caller === undefined) return { allowed: false, rule: `port ${port} allow list (needs mTLS)` }
    let namespace: string | undefined
    try { namespace = parseSpiffeId(caller).namespace } catch { namespace = undefined }
    for (const r of rules) {
      if ('identity' in r ? r.identity === caller : r.namespace === namespace) return { allowed: true, rule: `port ${port} allow ${ruleText(r)}` }
    }
    return { allowed: false, rule: `port ${port} allow list` }
  }
  switch (policy.default) {
    case 'all-unauthenticated': return { allowed: true, rule: 'default all-unauthenticated' }
    case 'all-authenticated': return { allowed: caller !== undefined, rule: 'default all-authenticated' }
    case 'deny': return { allowed: false, rule: 'default deny' }
  }
}

export const ruleText = (r: AllowRule): string => 'identity' in r ? r.identity : `ns:${r.namespace}`

/** One allow-list entry: a workload SPIFFE ID, or `ns:<namespace>`. Throws saying what is wrong. */
export function parseAllowRule (raw: string): AllowRule {
  const v = raw.trim()
  if (v.startsWith('ns:')) {
    const namespace = v.slice(3)
    if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(namespace)) throw new Error(`"${raw}": ns: needs a Kubernetes namespace name (lower-case letters, digits, "-")`)
    return { namespace }
  }
  if (v.startsWith('spiffe://')) {
    parseSpiffeId(v)
    return { identity: v }
  }
  throw new Error(`"${raw}" is neither a SPIFFE ID (spiffe://<trust-domain>/ns/<ns>/sa/<sa>) nor ns:<namespace>`)
}

/**
 * `REMORA_AUTHZ_ALLOW` (and the `remora.dev/allow` pod annotation it comes from):
 * `8080=ns:shop,spiffe://cluster.local/ns/ops/sa/admin;9090=ns:ops` — port groups separated by `;`.
 */
export function parseAllowSetting (raw: string): Record<number, AllowRule[]> {
  const out: Record<number, AllowRule[]> = {}
  for (const group of raw.split(';').map((g) => g.trim()).filter((g) => g !== '')) {
    const eq = group.indexOf('=')
    const port = Number(group.slice(0, eq))
    if (eq < 1 || !Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`"${group}" should look like <port>=<rule>,<rule> (for example 8080=ns:shop)`)
    const rules = group.slice(eq + 1).split(',').filter((r) => r.trim() !== '').map(parseAllowRule)
    if (rules.length === 0) throw new Error(`"${group}" lists no callers; to refuse everyone on a port use the deny default policy`)
    out[port] = [...(out[port] ?? []), ...rules]
  }
  return out
}
