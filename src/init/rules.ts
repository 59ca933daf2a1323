// The interception rules, pure: options → iptables-restore input per family, and the input that removes them.
import { formatCidr, type Cidr } from '../parse/cidr.ts'
import { formatPortRange, type PortRange } from '../parse/port-list.ts'

export type Family = 'ipv4' | 'ipv6'
export const FAMILIES: readonly Family[] = ['ipv4', 'ipv6']

export interface InterceptOptions {
  readonly proxyUid: number
  readonly proxyGid?: number
  readonly inboundPort: number
  readonly outboundPort: number
  readonly adminPort: number
  readonly skipInboundPorts: readonly PortRange[]
  readonly skipOutboundPorts: readonly PortRange[]
  readonly skipOutboundCidrs: readonly Cidr[]
}

export const CHAINS = Object.freeze({
  inbound: 'REMORA_INBOUND', inRedirect: 'REMORA_IN_REDIRECT', output: 'REMORA_OUTPUT', outRedirect: 'REMORA_OUT_REDIRECT',
})

/** The jumps from the built-in chains into remora's, spelled as iptables-save writes them. */
export const JUMPS: readonly string[] = Object.freeze([
  `-A PREROUTING -p tcp -j ${CHAINS.inbound}`,
  `-A OUTPUT -p tcp -j ${CHAINS.output}`,
])

const LOOPBACK: Record<Family, string> = { ipv4: '127.0.0.0/8', ipv6: '::1/128' }
const FAMILY_OF: Record<Family, 4 | 6> = { ipv4: 4, ipv6: 6 }

/** The rules of remora's four chains, in iptables-save's spelling (so they read back unchanged). */
export function chainRules (o: InterceptOptions, family: Family): string[] {
  const { inbound, inRedirect, output, outRedirect } = CHAINS
  const keepInbound = [...new Set([o.inboundPort, o.adminPort].map(String)), ...o.skipInboundPorts.map(formatPortRange)]
  return [
    ...keepInbound.map((p) => `-A ${inbound} -p tcp -m tcp --dport ${p} -j RETURN`),
    `-A ${inbound} -p tcp -j ${inRedirect}`,
    `-A ${inRedirect} -p tcp -j REDIRECT --to-ports ${o.inboundPort}`,
    `-A ${output} -m owner --uid-owner ${o.proxyUid} -j RETURN`,
    ...o.proxyGid === undefined ? [] : [`-A ${output} -m owner --gid-owner ${o.proxyGid} -j RETURN`],
    `-A ${output} -d ${LOOPBACK[family]} -o lo -j RETURN`,
    ...o.skipOutboundCidrs.filter((c) => c.family === FAMILY_OF[family]).map((c) => `-A ${output} -d ${formatCidr(c)} -j RETURN`),
    ...o.skipOutboundPorts.map((p) => `-A ${output} -p tcp -m tcp --dport ${formatPortRange(p)} -j RETURN`),
    `-A ${output} -p tcp -j ${outRedirect}`,
    `-A ${outRedirect} -p tcp -j REDIRECT --to-ports ${o.outboundPort}`,
  ]
}

/** The nat table as iptables-save shows it: its chains and its rules (`-A …` lines). */
export interface NatTable { readonly chains: readonly string[], readonly rules: readonly string[] }

export const EMPTY_NAT: NatTable = Object.freeze({ chains: [], rules: [] })

/** The `*nat` section of iptables-save output (an absent table reads as empty). */
export function parseNat (save: string): NatTable {
  const chains: string[] = []
  const rules: string[] = []
  let inNat = false
  for (const line of save.split('\n').map((l) => l.trim())) {
    if (line.startsWith('*')) inNat = line === '*nat'
    else if (!inNat) continue
    else if (line.startsWith(':')) chains.push(line.slice(1).split(/\s+/)[0])
    else if (line.startsWith('-A ')) rules.push(line)
    else if (line === 'COMMIT') inNat = false
  }
  return { chains, rules }
}

const ours = (name: string): boolean => name.startsWith('REMORA_')
const chainOf = (rule: string): string => rule.split(/\s+/)[1]
const jumpsToOurs = (rule: string): boolean => / -[jg] REMORA_\S+( |$)/.test(rule) && !ours(chainOf(rule))

/**
 * iptables-restore --noflush input that (re)builds remora's chains, flushing them first, and adds
 * the jumps only where they are missing (removing stale or doubled ones), so a second run changes nothing.
 */
export function applyText (o: InterceptOptions, family: Family, now: NatTable = EMPTY_NAT): { text: string, jumpsAdded: number } {
  const existing = now.rules.filter(jumpsToOurs)
  const keep = new Set<string>()
  const remove: string[] = []
  for (const rule of existing) {
    if (JUMPS.includes(rule) && !keep.has(rule)) keep.add(rule)
    else remove.push(rule.replace(/^-A /, '-D '))
  }
  const add = JUMPS.filter((j) => !keep.has(j))
  const lines = [
    '*nat',
    ...Object.values(CHAINS).map((c) => `:${c} - [0:0]`),
    ...remove,
    ...chainRules(o, family),
    ...add,
    'COMMIT',
  ]
  return { text: lines.join('\n') + '\n', jumpsAdded: add.length }
}

/** iptables-restore --noflush input removing every jump into a REMORA_* chain and those chains; undefined when there are none. */
export function cleanupText (now: NatTable): string | undefined {
  const chains = now.chains.filter(ours)
  const jumps = now.rules.filter(jumpsToOurs)
  if (chains.length === 0 && jumps.length === 0) return undefined
  return [
    '*nat',
    ...jumps.map((r) => r.replace(/^-A /, '-D ')),
    ...chains.map((c) => `-F ${c}`),
    ...chains.map((c) => `-X ${c}`),
    'COMMIT',
  ].join('\n') + '\n'
}

/** iptables-save output without comments and counters, for comparing two states. */
export function normaliseSave (save: string): string {
  return save.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => l.replace(/\[\d+:\d+\]/g, '[0:0]')).join('\n')
}
