// Percentiles and medians of measured values, shared by the load generators and the benches.

/** The p-th percentile (nearest rank) of an ascending array; NaN when it is empty. */
export function percentile (sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.ceil(p / 100 * sorted.length) - 1)]
}

/** The middle value (the mean of the two middle ones for an even count); NaN when there are none. */
export function median (values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b)
  if (s.length === 0) return NaN
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
