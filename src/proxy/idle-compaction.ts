// Gives memory back when the sidecar is quiet: one full, memory-reducing GC once start-up is over,
// and again after each busy period, never while a request is in flight or opaque TCP bytes flow.
import type { Logger } from 'pino'

/** What the sidecar is doing: requests in flight, and how many requests and opaque TCP reads it has seen so far. */
export interface Activity { readonly inflight: number, readonly events: number }

export interface CompactionOptions {
  /** Quiet this long after start: the start-up garbage (config, keys, certificates, module loading) goes. */
  readonly afterStartMs: number
  /** Quiet this long after traffic: what the busy period left (a young generation at full size, promoted garbage) goes. */
  readonly afterTrafficMs: number
  /** How often activity is looked at. */
  readonly tickMs: number
}

/**
 * Long enough that a request every few seconds never meets a compaction (each is a 40–60 ms pause
 * of the sidecar, docs/performance.md); short enough that a sidecar is small again well before
 * anyone looks at an idle pod.
 */
export const COMPACTION: CompactionOptions = Object.freeze({ afterStartMs: 1_000, afterTrafficMs: 30_000, tickMs: 1_000 })

/**
 * V8 frees the start-up garbage and shrinks a young generation that grew under load only when it
 * is told memory matters: node never tells it, so an idle sidecar kept ~10 MB after start and
 * ~20 MB after a burst. This is the `gc` that node's `--expose-gc` gives (the image starts node
 * with it); without it nothing is compacted.
 */
type Gc = (options: { type: 'major', execution: 'sync', flavor: 'last-resort' }) => void

export function compactWhenIdle (activity: () => Activity, log: Logger, options: CompactionOptions = COMPACTION, gc: Gc | undefined = (globalThis as { gc?: Gc }).gc): { stop (): void } {
  if (gc === undefined) {
    log.debug('idle compaction off: node was started without --expose-gc')
    return { stop () {} }
  }
  let seen = activity().events
  let quietSince = performance.now()
  /** The event count at the last compaction: nothing new since, nothing to give back. */
  let compactedAt: number | undefined
  const timer = setInterval(() => {
    const now = activity()
    if (now.inflight > 0 || now.events !== seen) {
      seen = now.events
      quietSince = performance.now()
      return
    }
    if (compactedAt === seen) return
    const wait = compactedAt === undefined && seen === 0 ? options.afterStartMs : options.afterTrafficMs
    if (performance.now() - quietSince < wait) return
    compactedAt = seen
    const before = process.memoryUsage.rss()
    const started = performance.now()
    gc({ type: 'major', execution: 'sync', flavor: 'last-resort' })
    log.debug({ rss_mb_before: mb(before), rss_mb_after: mb(process.memoryUsage.rss()), gc_ms: Math.round(performance.now() - started), events: seen }, 'idle: memory given back')
  }, options.tickMs)
  timer.unref()
  return { stop: () => clearInterval(timer) }
}

const mb = (bytes: number): number => Math.round(bytes / 1048576 * 10) / 10
