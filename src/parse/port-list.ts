// Port lists as users write them: `8080,9000:9100,9200-9300` (single ports and inclusive ranges).

/** An inclusive range of TCP ports; a single port has first === last. */
export interface PortRange { readonly first: number, readonly last: number }

const within = (entry: string, whole: string): string => entry === whole.trim() ? `"${entry}"` : `"${entry}" in "${whole}"`

const port = (raw: string, whole: string): number => {
  const n = Number(raw)
  if (!/^\d{1,5}$/.test(raw) || n < 1 || n > 65535) throw new Error(`${within(raw, whole)} is not a port number 1-65535`)
  return n
}

/** Comma-separated ports and ranges (`a:b` or `a-b`); empty entries are ignored. Throws naming the bad entry. */
export function parsePortList (raw: string): readonly PortRange[] {
  const out: PortRange[] = []
  for (const entry of raw.split(',').map((e) => e.trim()).filter((e) => e !== '')) {
    const m = /^([^:-]+)[:-]([^:-]+)$/.exec(entry)
    if (m === null && /[:-]/.test(entry)) throw new Error(`${within(entry, raw)} is not a port or a range such as 9000:9100 or 9000-9100`)
    const first = port((m?.[1] ?? entry).trim(), raw)
    const last = m === null ? first : port(m[2].trim(), raw)
    if (last < first) throw new Error(`range ${within(entry, raw)} ends before it starts`)
    out.push(Object.freeze({ first, last }))
  }
  return Object.freeze(out)
}

/** Every port of the ranges, in order (a set of ports to look up, not rules to write). */
export function portsOf (ranges: readonly PortRange[]): number[] {
  const out: number[] = []
  for (const r of ranges) for (let p = r.first; p <= r.last; p++) out.push(p)
  return out
}

/** As iptables writes it: `8080` or `9000:9100`. */
export const formatPortRange = (r: PortRange): string => r.first === r.last ? String(r.first) : `${r.first}:${r.last}`
