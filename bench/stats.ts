// Percentiles of measured latencies, shared by the load generators and the benches.

/** The p-th percentile (nearest rank) of an ascending array; NaN when it is empty. */
export function percentile (sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.ceil(p / 100 * sorted.length) - 1)]
}
