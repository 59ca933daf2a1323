// bench:control's messages between the main process and the simulation workers (IPC), and the counts a worker keeps.

/** One endpoint key that appeared (op 1) in, or left (op 0), one sidecar's view of one authority, and when (ms). */
export type Arrival = [sidecar: number, authority: string, key: string, op: 0 | 1, t: number]

/** A simulated sidecar: its number and the authorities it watches. */
export interface SidecarSpec { id: number, authorities: string[] }

export type ToWorker =
  | { id: number, cmd: 'init', base: string, addr: string, sidecars: SidecarSpec[], concurrency: number, timeoutMs: number }
  | { id: number, cmd: 'collect' }
  | { id: number, cmd: 'stats' }
  | { id: number, cmd: 'verify', expected: Record<string, string[]> }
  | { id: number, cmd: 'close' }

/** A message as the main process writes it: the worker handle adds the id. */
export type Command = WithoutId<ToWorker>
type WithoutId<M> = M extends unknown ? Omit<M, 'id'> : never

export interface WorkerCounts {
  snapshot: number
  delta: number
  absent: number
  /** A snapshot on a watch that already had one: only after a reset or a non-endpoint change (neither happens here). */
  resnapshot: number
  /** A delta whose `previous` is not the version the watch holds. */
  gaps: number
  badMessages: number
  badStatus: number
  streamErrors: number
  /** Watches that ended while the bench still wanted them (not by close). */
  streamEnds: number
  sessionErrors: number
  bytes: number
}

export function noCounts (): WorkerCounts {
  return { snapshot: 0, delta: 0, absent: 0, resnapshot: 0, gaps: 0, badMessages: 0, badStatus: 0, streamErrors: 0, streamEnds: 0, sessionErrors: 0, bytes: 0 }
}

export interface WorkerStats {
  counts: WorkerCounts
  /** Event-loop delay of the worker since the last stats call, ms. */
  loopDelayP99Ms: number
  loopDelayMaxMs: number
  lastError?: string
}

/** A watch whose endpoints differ from the cluster's at the end. */
export interface Mismatch { sidecar: number, authority: string, expected: number, got: number, missing: string[], extra: string[] }
