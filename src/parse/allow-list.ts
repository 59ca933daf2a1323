// Allow lists as users write them (mesh file, REMORA_AUTHZ_ALLOW, the remora.dev/allow annotation).
import type { AllowRule } from '../mesh/authorization.ts'
import { parseSpiffeId } from '../mesh/spiffe-id.ts'

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
