// bench:control's CPU profile of the control plane (--cpu-prof): its hot spots over the whole run and in each busy phase.
import { existsSync, readFileSync } from 'node:fs'
import { summarize } from '../prof-top.ts'
import { clockBase } from './clock.ts'
import type { PhaseUsage } from './phases.ts'

type Profile = Parameters<typeof summarize>[0]

/**
 * The samples of a V8 CPU profile taken within a window of the bench clock. V8 stamps profiles with
 * CLOCK_MONOTONIC in µs, the clock process.hrtime reads, so the bench's phase times line up with it.
 */
function slice (p: Profile, [from, to]: [number, number]): Profile {
  const zero = Number(clockBase() / 1000n)
  const lo = zero + from * 1000
  const hi = zero + to * 1000
  const samples: number[] = []
  const deltas: number[] = []
  let t = p.startTime
  let last = lo
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i] ?? 0
    if (t < lo || t > hi) continue
    samples.push(p.samples[i])
    deltas.push(t - last)
    last = t
  }
  return { ...p, startTime: lo, endTime: hi, samples, timeDeltas: deltas }
}

/** The profile's summary, whole and per phase (idle ones left out); a note when the control plane wrote none. */
export function profileText (file: string, phases: Record<string, PhaseUsage>, controlLog: string): string {
  if (!existsSync(file)) return `\nno CPU profile was written (the control plane did not exit cleanly); see ${controlLog}\n`
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
  let text = `\ncontrol plane CPU profile (${file}), whole run:\n${summarize(profile, 15)}`
  for (const [phase, u] of Object.entries(phases)) {
    if (phase.includes('dle')) continue
    const part = slice(profile, u.window)
    if (part.samples.length > 1) text += `\n--- control plane CPU profile, phase "${phase}" only:\n${summarize(part, 15)}`
  }
  return text
}
