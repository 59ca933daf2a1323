// Who may call a workload's port: a default policy and allow lists of SPIFFE IDs and namespaces.

export const DEFAULT_POLICIES = ['all-authenticated', 'all-unauthenticated', 'deny'] as const

export type DefaultPolicy = typeof DEFAULT_POLICIES[number]

export type AllowRule = { readonly identity: string } | { readonly namespace: string }

export interface AuthorizationPolicy {
  /** For ports without an allow list. */
  readonly default: DefaultPolicy
  /** Ports with an allow list admit only the callers it names (mTLS required). */
  readonly allow: Readonly<Record<number, readonly AllowRule[]>>
}

export const ruleText = (r: AllowRule): string => 'identity' in r ? r.identity : `ns:${r.namespace}`
