// Command-line flags shared by the benches: `--flag value` and `--flag=value`, and durations.

/**
 * Walks `argv`, giving `on` each flag and a function that takes its value (the `=` part or the
 * next argument; a missing one is an error). `on` returns false for a flag it does not know.
 */
export function eachFlag (argv: readonly string[], on: (flag: string, value: () => string) => boolean): void {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const [flag, inline] = arg.includes('=') ? arg.split(/=(.*)/s, 2) : [arg, undefined]
    const value = (): string => {
      const v = inline ?? argv[++i]
      if (v === undefined) throw new Error(`${flag} needs a value`)
      return v
    }
    if (!on(flag, value)) throw new Error(`unknown option ${arg}; see --help`)
  }
}

/** "30s", "2m", "500ms" or a bare number of seconds → seconds. */
export function parseDuration (raw: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(raw.trim())
  if (m === null) throw new Error(`expected a duration such as 30s, 2m or 500ms, got "${raw}"`)
  const scale = m[2] === 'ms' ? 0.001 : m[2] === 'm' ? 60 : 1
  return Number(m[1]) * scale
}

/** A count such as rounds or repetitions: a whole number of at least 1. */
export function parseCount (flag: string, raw: string): number {
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag}: expected a whole number of at least 1, got "${raw}"`)
  return n
}
