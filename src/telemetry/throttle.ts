// Logs an event at most once a minute per key (caller + rule, TLS failure reason), with how many were
// suppressed: security events stay visible without one line per request.
export class LogThrottle {
  readonly #last = new Map<string, { at: number, suppressed: number }>()
  readonly #everyMs: number

  constructor (everyMs = 60_000) { this.#everyMs = everyMs }

  /** Calls `log(suppressed)` if this key was not logged within the interval; else counts it. */
  run (key: string, log: (suppressed: number) => void): void {
    const now = Date.now()
    const seen = this.#last.get(key)
    if (seen !== undefined && now - seen.at < this.#everyMs) { seen.suppressed++; return }
    if (this.#last.size > 10_000) this.#last.clear()
    this.#last.set(key, { at: now, suppressed: 0 })
    log(seen?.suppressed ?? 0)
  }
}
