// bench:control's clock, shared by the main process and the simulation workers: ms since one base on CLOCK_MONOTONIC.
// process.hrtime is CLOCK_MONOTONIC, the same clock in every process on the machine, so an apply time
// taken in the main process and an arrival time taken in a worker compare directly.

let base = 0n

/** The main process: the clock starts now; returns the base, for the workers. */
export function startClock (): bigint {
  base = process.hrtime.bigint()
  return base
}

/** A worker: the main process's base. */
export function useClock (mainBase: bigint): void {
  base = mainBase
}

export function clockBase (): bigint {
  return base
}

/** Milliseconds since the base. */
export const now = (): number => Number(process.hrtime.bigint() - base) / 1e6
