// Command-line flags of every bench: `--flag value` and `--flag=value`, --help, durations and counts,
// and the flags shared by the benches that start remora on this machine.

/**
 * Walks `argv`, giving `on` each flag and a function that takes its value (the `=` part or the
 * next argument; a missing one is an error). `on` returns false for a flag it does not know.
 * --help and -h print `help` and exit.
 */
export function eachFlag (argv: readonly string[], help: () => string, on: (flag: string, value: () => string) => boolean): void {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const [flag, inline] = arg.includes('=') ? arg.split(/=(.*)/s, 2) : [arg, undefined]
    const value = (): string => {
      const v = inline ?? argv[++i]
      if (v === undefined) throw new Error(`${flag} needs a value`)
      return v
    }
    if (flag === '--help' || flag === '-h') {
      process.stdout.write(help())
      process.exit(0)
    }
    if (!on(flag, value)) throw new Error(`unknown option ${arg}; see --help`)
  }
}

/** The flags of the benches that start remora themselves and measure on this machine (`npm run bench`, bench:control). */
export interface RunFlags {
  /** Pin processes to CPUs with taskset (--no-pin: don't). */
  pin: boolean
  /** Run remora from src/ with Node's type stripping instead of the esbuild bundle the image ships. */
  src: boolean
  cpuProf: boolean
  keepTmp: boolean
  /** Wait for other processes to calm down before measuring (--no-wait-quiet: don't), at most quietWaitS. */
  waitQuiet: boolean
  quietWaitS: number
  /** Extra node flags for the remora processes under test. */
  nodeOptions: string[]
}

/** Sets `o` from one of the RunFlags' flags; false for any other flag. */
export function runFlag (o: RunFlags, flag: string, value: () => string): boolean {
  switch (flag) {
    case '--no-pin': o.pin = false; break
    case '--src': o.src = true; break
    case '--cpu-prof': o.cpuProf = true; break
    case '--keep-tmp': o.keepTmp = true; break
    case '--no-wait-quiet': o.waitQuiet = false; break
    case '--quiet-wait': o.quietWaitS = parseDuration(value()); break
    case '--node-options': o.nodeOptions = value().split(/\s+/).filter((f) => f !== ''); break
    default: return false
  }
  return true
}

/** "30s", "2m", "500ms" or a bare number of seconds → seconds. */
export function parseDuration (raw: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(raw.trim())
  if (m === null) throw new Error(`expected a duration such as 30s, 2m or 500ms, got "${raw}"`)
  const scale = m[2] === 'ms' ? 0.001 : m[2] === 'm' ? 60 : 1
  return Number(m[1]) * scale
}

/** A load's length in whole seconds, at least 1 (wrk and h2load take whole seconds). */
export function parseWholeSeconds (raw: string): number {
  return Math.max(1, Math.round(parseDuration(raw)))
}

/** A count such as rounds, repetitions or sidecars: a whole number of at least `min`. */
export function parseCount (flag: string, raw: string, min = 1): number {
  const n = Number(raw)
  if (!Number.isInteger(n) || n < min) throw new Error(`${flag}: expected a whole number of at least ${min}, got "${raw}"`)
  return n
}

/** A rate, a size or a number of seconds: any number above 0. */
export function parsePositive (flag: string, raw: string): number {
  const n = Number(raw)
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${flag} needs a positive number, got "${raw}"`)
  return n
}
