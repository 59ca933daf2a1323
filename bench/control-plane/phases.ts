// bench:control's phase meter: what the control plane, the simulation workers, the bench and the rest
// of the machine used while one phase ran, and what the control plane's /metrics counted in it.
import { scrapeMetrics, type MetricFamily } from '../../test/harness/metrics.ts'
import type { Child } from '../procs.ts'
import { ForeignLoad, Sampler, type ProcUsage } from '../sample.ts'
import { now } from './clock.ts'
import type { WorkerStats } from './protocol.ts'
import { pushSummary, type PushSummary } from './push-metrics.ts'
import type { SimWorker } from './workers.ts'

export interface PhaseUsage {
  seconds: number
  /** Start and end, ms on the bench clock (hrtime since the bench began). */
  window: [number, number]
  control: ProcUsage
  /** CPU seconds the control plane used in the window. */
  controlCpuS: number
  sim: ProcUsage[]
  benchCpuPct: number
  otherLoadPct: number
  push: PushSummary
  simLoopDelayMaxMs: number
}

export type Measure = <T>(run: () => Promise<T>) => Promise<{ result: T, usage: PhaseUsage }>

/** A meter whose phases follow each other: each one's /metrics counts start where the last one's ended. */
export async function phaseMeter (control: Child, controlAdminUrl: string, workers: SimWorker[]): Promise<Measure> {
  let scraped: MetricFamily[] = await scrapeMetrics(controlAdminUrl)
  return async <T>(run: () => Promise<T>): Promise<{ result: T, usage: PhaseUsage }> => {
    const sampler = new Sampler([{ label: 'control', pid: control.pid }, ...workers.map((w) => ({ label: `sim-${w.index}`, pid: w.pid }))])
    const foreign = new ForeignLoad()
    // A stats call resets each worker's event-loop delay histogram: the phase's own starts here.
    await Promise.all(workers.map((w) => w.call({ cmd: 'stats' })))
    const cpu0 = process.cpuUsage()
    const start = now()
    foreign.start()
    sampler.start()
    const result = await run()
    const [controlUsage, ...sim] = sampler.stop()
    const otherLoadPct = foreign.stop()
    const seconds = (now() - start) / 1000
    const cpu = process.cpuUsage(cpu0)
    const after = await scrapeMetrics(controlAdminUrl)
    const push = pushSummary(scraped, after)
    scraped = after
    const stats = await Promise.all(workers.map((w) => w.call<{ stats: WorkerStats }>({ cmd: 'stats' })))
    return {
      result,
      usage: {
        seconds: Math.round(seconds * 100) / 100,
        window: [Math.round(start), Math.round(start + seconds * 1000)],
        control: controlUsage,
        controlCpuS: Math.round(controlUsage.cpuPct * seconds) / 100,
        sim,
        benchCpuPct: Math.round((cpu.user + cpu.system) / 1e4 / seconds * 10) / 10,
        otherLoadPct,
        push,
        simLoopDelayMaxMs: Math.round(Math.max(...stats.map((s) => s.stats.loopDelayMaxMs)) * 10) / 10,
      },
    }
  }
}
