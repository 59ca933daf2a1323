// Exponential backoff with full jitter: spreads retries so they do not arrive in waves.
export function backoffMs (attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  return Math.round(random() * Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1)))
}
