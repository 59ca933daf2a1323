// `node bench/prof-top.ts <file.cpuprofile> [n] [fn]`: a V8 CPU profile's hot spots (self and inclusive time) with file:line.
import { readFileSync } from 'node:fs'
import { relative } from 'node:path'

interface CallFrame { functionName: string, url: string, lineNumber: number, columnNumber: number }
interface ProfileNode { id: number, callFrame: CallFrame, hitCount?: number, children?: number[] }
interface Profile { nodes: ProfileNode[], startTime: number, endTime: number, samples: number[], timeDeltas: number[] }

const ROOT = new URL('..', import.meta.url).pathname

function where (f: CallFrame): string {
  let url = f.url.startsWith('file://') ? relative(ROOT, new URL(f.url).pathname) : f.url
  // A checkout elsewhere (bench --rev): name files from the project root all the same.
  if (url.startsWith('../')) url = /(?:^|\/)((?:src|node_modules)\/.*)$/.exec(url)?.[1] ?? url
  const name = f.functionName === '' ? '(anonymous)' : f.functionName
  return url === '' ? name : `${name}  ${url}:${f.lineNumber + 1}`
}

export function summarize (profile: Profile, top = 25, focus?: string): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  // Time per sample: the delta to the next sample (V8 records the delta before each sample).
  const selfUs = new Map<number, number>()
  let maxGap = 0
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i + 1] ?? 0
    maxGap = Math.max(maxGap, profile.timeDeltas[i] ?? 0)
    selfUs.set(profile.samples[i], (selfUs.get(profile.samples[i]) ?? 0) + dt)
  }
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0)
  const self = new Map<string, number>()
  const incl = new Map<string, number>()
  for (const [id, us] of selfUs) {
    const node = byId.get(id)
    if (node === undefined) continue
    const key = where(node.callFrame)
    self.set(key, (self.get(key) ?? 0) + us)
    // Inclusive: count each distinct function once per stack.
    const seen = new Set<string>()
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const k = where((byId.get(cur) as ProfileNode).callFrame)
      if (seen.has(k)) continue
      seen.add(k)
      incl.set(k, (incl.get(k) ?? 0) + us)
    }
  }
  const idle = self.get('(idle)') ?? 0
  const busy = total - idle
  const pct = (us: number): string => `${(us / busy * 100).toFixed(1).padStart(5)}%`
  const lines = [`profile: ${(total / 1e6).toFixed(1)} s sampled, ${(busy / 1e6).toFixed(1)} s busy (percentages are of busy time); longest gap between samples ${(maxGap / 1000).toFixed(1)} ms`, '', 'self time:']
  for (const [k, us] of [...self].filter(([k]) => k !== '(idle)' && k !== '(root)').sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`  ${pct(us)}  ${k}`)
  lines.push('', 'self time by area:')
  const areas = new Map<string, number>()
  for (const [k, us] of self) {
    if (k === '(idle)' || k === '(root)') continue
    const area = /\s(src\/[^:]+)/.exec(k)?.[1] ??
      /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(k)?.[1] ??
      /\s(node:internal\/[a-z0-9_]+|node:[a-z0-9_]+)/.exec(k)?.[1]?.replace(/^node:internal\/(?=(http2|streams|process|events|modules|fs|bootstrap|deps)\b)/, 'node:') ??
      (k.startsWith('(') ? k : k.includes('wasm://') ? 'wasm' : 'native (syscalls, C++ builtins)')
    areas.set(area, (areas.get(area) ?? 0) + us)
  }
  for (const [k, us] of [...areas].sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`  ${pct(us)}  ${k}`)
  lines.push('', 'inclusive time, project code (src/):')
  for (const [k, us] of [...incl].filter(([k]) => k.includes(' src/')).sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`  ${pct(us)}  ${k}`)
  if (focus !== undefined) {
    // Bottom-up: the stacks (first few callers) under which functions matching `focus` run.
    const stacks = new Map<string, number>()
    for (const [id, us] of selfUs) {
      const chain: string[] = []
      let hit = false
      for (let cur: number | undefined = id; cur !== undefined && chain.length < 8; cur = parent.get(cur)) {
        const k = where((byId.get(cur) as ProfileNode).callFrame)
        if (!hit && k.includes(focus)) hit = true
        if (hit) chain.push(k)
      }
      if (hit) stacks.set(chain.join('\n        ← '), (stacks.get(chain.join('\n        ← ')) ?? 0) + us)
    }
    lines.push('', `stacks under "${focus}" (time spent at or below it):`)
    for (const [k, us] of [...stacks].sort((a, b) => b[1] - a[1]).slice(0, 8)) lines.push(`  ${pct(us)}  ${k}`)
  }
  return lines.join('\n') + '\n'
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  const [file, n, focus] = process.argv.slice(2)
  if (file === undefined) {
    process.stderr.write('usage: node bench/prof-top.ts <file.cpuprofile> [top-n] [function-name: show the stacks under it]\n')
    process.exit(2)
  }
  process.stdout.write(summarize(JSON.parse(readFileSync(file, 'utf8')) as Profile, n === undefined ? 25 : Number(n), focus))
}
