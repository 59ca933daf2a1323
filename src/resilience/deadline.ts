// gRPC deadlines: `grpc-timeout` read on the way in, the remaining time written on the way out.
const UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 }

/** "100m" → 100 (ms); undefined when absent or malformed (a malformed value is ignored, as gRPC does). */
export function parseGrpcTimeout (value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const m = /^(\d{1,8})([HMSmun])$/.exec(value)
  return m === null ? undefined : Number(m[1]) * UNIT_MS[m[2]]
}

/** Milliseconds → a grpc-timeout value (at most 8 digits; ms precision, never 0). */
export function formatGrpcTimeout (ms: number): string {
  const v = Math.max(1, Math.ceil(ms))
  return v < 1e8 ? `${v}m` : `${Math.ceil(v / 1000)}S`
}
