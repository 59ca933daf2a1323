// Samples processes' RSS (/proc/<pid>/status VmRSS) and CPU time (/proc/<pid>/stat) during a measurement.
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'

let clockTicks: number | undefined
/** The kernel's clock ticks per second (CPU times in /proc are in ticks). */
export function ticksPerSecond (): number {
  if (clockTicks === undefined) {
    try { clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100 } catch { clockTicks = 100 }
  }
  return clockTicks
}

interface Stat { ppid: number, ticks: number, childTicks: number }

function readStat (pid: number | 'self'): Stat | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name (which may hold spaces) start at field 3, "state".
    const rest = raw.slice(raw.lastIndexOf(')') + 2).split(' ')
    return { ppid: Number(rest[1]), ticks: Number(rest[11]) + Number(rest[12]), childTicks: Number(rest[13]) + Number(rest[14]) }
  } catch { return undefined }
}

/** Busy CPU ticks of the whole machine, all CPUs (steal counts: the hypervisor gave the time to someone else). */
function machineBusyTicks (): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
  // user nice system idle iowait irq softirq steal
  return f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] ?? 0)
}

/** CPU ticks of the bench and everything it started, live or already reaped. */
function benchTicks (): number {
  let sum = 0
  for (const pid of processTree(process.pid)) {
    const st = readStat(pid)
    if (st !== undefined) sum += st.ticks + st.childTicks
  }
  return sum
}

/** Measures how much CPU the rest of the machine uses (other users' processes, steal), % of one core. */
export class ForeignLoad {
  #t0 = 0
  #busy0 = 0
  #own0 = 0

  start (): void {
    this.#t0 = performance.now()
    this.#busy0 = machineBusyTicks()
    this.#own0 = benchTicks()
  }

  stop (): number {
    const seconds = (performance.now() - this.#t0) / 1000
    const foreign = (machineBusyTicks() - this.#busy0) - (benchTicks() - this.#own0)
    return Math.max(0, Math.round(foreign / ticksPerSecond() / seconds * 100))
  }
}

/** Before a measurement: wait (up to maxWaitMs) until other processes use less than `thresholdPct` of a core. */
export async function waitForQuiet (thresholdPct: number, maxWaitMs: number, onWait: (pct: number) => void): Promise<number> {
  const deadline = Date.now() + maxWaitMs
  let warned = false
  for (;;) {
    const f = new ForeignLoad()
    f.start()
    await new Promise((resolve) => setTimeout(resolve, 500))
    const pct = f.stop()
    if (pct < thresholdPct || Date.now() >= deadline) return pct
    if (!warned) { onWait(pct); warned = true }
  }
}

/** A process's CPU time so far (user + system), in clock ticks; 0 once it is gone. */
export function cpuTicksOf (pid: number): number { return readStat(pid)?.ticks ?? 0 }

/** A process's resident set, in MB; 0 once it is gone. */
export function rssMbOf (pid: number): number { return (readRssKb(pid) ?? 0) / 1024 }

function readRssKb (pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m === null ? undefined : Number(m[1])
  } catch { return undefined }
}

/** The process and all its descendants (nginx master + worker), from a scan of /proc. */
function processTree (root: number): number[] {
  const children = new Map<number, number[]>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const st = readStat(Number(entry))
    if (st === undefined) continue
    const list = children.get(st.ppid) ?? []
    list.push(Number(entry))
    children.set(st.ppid, list)
  }
  const out: number[] = []
  const queue = [root]
  while (queue.length > 0) {
    const pid = queue.shift() as number
    out.push(pid)
    queue.push(...(children.get(pid) ?? []))
  }
  return out
}

export interface ProcUsage {
  label: string
  /** Highest RSS seen (sum over the process tree), MiB. */
  peakRssMb: number
  /** CPU time over wall time of the window, percent of one core. */
  cpuPct: number
}

export interface SampleTarget { label: string, pid: number }

/** Start before the load, stop after: peak RSS and CPU% per target over that window. */
export class Sampler {
  readonly #targets: Array<SampleTarget & { pids: number[], startTicks: number, lastTicks: number, peakKb: number }>
  #timer: NodeJS.Timeout | undefined
  #startedAt = 0
  readonly intervalMs: number

  constructor (targets: SampleTarget[], intervalMs = 100) {
    this.intervalMs = intervalMs
    this.#targets = targets.map((t) => ({ ...t, pids: [], startTicks: 0, lastTicks: 0, peakKb: 0 }))
  }

  start (): void {
    for (const t of this.#targets) {
      t.pids = processTree(t.pid)
      t.startTicks = this.#ticks(t.pids)
      t.lastTicks = t.startTicks
      t.peakKb = this.#rss(t.pids)
    }
    this.#startedAt = performance.now()
    this.#timer = setInterval(() => this.#sample(), this.intervalMs)
  }

  stop (): ProcUsage[] {
    clearInterval(this.#timer)
    this.#sample()
    const seconds = (performance.now() - this.#startedAt) / 1000
    return this.#targets.map((t) => ({
      label: t.label,
      peakRssMb: Math.round(t.peakKb / 102.4) / 10,
      cpuPct: Math.round(((t.lastTicks - t.startTicks) / ticksPerSecond()) / seconds * 1000) / 10,
    }))
  }

  #sample (): void {
    for (const t of this.#targets) {
      const ticks = this.#ticks(t.pids)
      if (ticks > 0) t.lastTicks = Math.max(t.lastTicks, ticks)
      t.peakKb = Math.max(t.peakKb, this.#rss(t.pids))
    }
  }

  #ticks (pids: number[]): number {
    let sum = 0
    for (const pid of pids) sum += readStat(pid)?.ticks ?? 0
    return sum
  }

  #rss (pids: number[]): number {
    let sum = 0
    for (const pid of pids) sum += readRssKb(pid) ?? 0
    return sum
  }
}
