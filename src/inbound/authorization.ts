// Who may call this workload, per inbound port: a default policy plus allow lists of SPIFFE IDs and
// namespaces, checked against the caller's verified identity (undefined for a plaintext caller).
import { parseSpiffeId } from '../mesh/spiffe-id.ts'
import { ruleText, type AuthorizationPolicy } from '../mesh/authorization.ts'

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
