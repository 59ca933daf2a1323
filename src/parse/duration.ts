// Durations as users write them (250ms, 30s, 2m, 1h): units required, so a bare number never surprises.
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/** "250ms", "30s", "2m", "1h" → milliseconds. A bare number is refused: units prevent surprises. */
export function parseDuration (raw: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(raw.trim())
  if (m === null) throw new Error(`expected a duration such as 500ms, 30s or 2m, got "${raw}"`)
  return Math.round(Number(m[1]) * UNIT_MS[m[2]])
}
