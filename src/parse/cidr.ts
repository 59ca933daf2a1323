// Address blocks as users write them: IPv4 or IPv6 CIDRs, a bare address meaning one host (/32, /128).
import { isIPv4, isIPv6 } from 'node:net'

/** A network block, stored as iptables shows it: the network address (host bits cleared) and the prefix. */
export interface Cidr { readonly family: 4 | 6, readonly network: string, readonly prefix: number }

function v4Bytes (a: string): number[] { return a.split('.').map(Number) }

function v6Bytes (a: string): number[] {
  let text = a.toLowerCase()
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (v4 !== null) {
    const [b0, b1, b2, b3] = v4Bytes(v4[1])
    text = text.slice(0, v4.index) + ((b0 << 8) | b1).toString(16) + ':' + ((b2 << 8) | b3).toString(16)
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined]
  const h = head === '' ? [] : head.split(':')
  const t = tail === undefined || tail === '' ? [] : tail.split(':')
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t]
  return groups.flatMap((g) => { const n = parseInt(g, 16); return [n >> 8, n & 0xff] })
}

function formatV6 (bytes: number[]): string {
  const groups = Array.from({ length: 8 }, (_, i) => ((bytes[2 * i] << 8) | bytes[2 * i + 1]).toString(16))
  // The canonical text form (RFC 5952): the URL parser compresses the longest run of zero groups.
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1)
}

/** `10.96.0.0/12`, `2001:db8::/32`, `10.0.0.7` (= /32), `fd00::1` (= /128). Throws saying what is wrong. */
export function parseCidr (raw: string): Cidr {
  const v = raw.trim()
  const slash = v.indexOf('/')
  const address = slash < 0 ? v : v.slice(0, slash)
  const family = isIPv4(address) ? 4 : isIPv6(address) && !address.includes('%') ? 6 : undefined
  if (family === undefined) throw new Error(`"${raw}" is not an IPv4 or IPv6 address or CIDR (for example 10.96.0.0/12 or fd00::/8)`)
  const bits = family === 4 ? 32 : 128
  const prefixText = slash < 0 ? String(bits) : v.slice(slash + 1)
  const prefix = Number(prefixText)
  if (!/^\d{1,3}$/.test(prefixText) || prefix > bits) throw new Error(`"${raw}": the prefix length must be 0-${bits}`)
  const bytes = family === 4 ? v4Bytes(address) : v6Bytes(address)
  const masked = bytes.map((b, i) => {
    const keep = Math.max(0, Math.min(8, prefix - 8 * i))
    return b & (0xff << (8 - keep)) & 0xff
  })
  const network = family === 4 ? masked.join('.') : formatV6(masked)
  return Object.freeze({ family, network, prefix })
}

/** Comma-separated CIDRs and addresses, IPv4 and IPv6 mixed; empty entries are ignored. */
export function parseCidrList (raw: string): readonly Cidr[] {
  const entries = raw.split(',').map((e) => e.trim()).filter((e) => e !== '')
  return Object.freeze(entries.map((e) => {
    try {
      return parseCidr(e)
    } catch (err) {
      throw new Error(entries.length > 1 ? `${(err as Error).message}, in "${raw}"` : (err as Error).message, { cause: err })
    }
  }))
}

export const formatCidr = (c: Cidr): string => `${c.network}/${c.prefix}`
