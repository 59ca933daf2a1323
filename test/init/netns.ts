// Test harness for remora init: throw-away network namespaces (root only), the CLI run inside one, iptables-save of it.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { normaliseSave } from '../../src/init/rules.ts'
import type { Backend } from '../../src/init/iptables.ts'

export const ROOT = new URL('../..', import.meta.url).pathname
export const CLI = join(ROOT, 'src/cli.ts')

const exec = promisify(execFile)

export const onPath = (bin: string): boolean => (process.env.PATH ?? '').split(':').some((d) => d !== '' && existsSync(join(d, bin)))

/** Why namespace tests cannot run here, or undefined when they can (root, `ip netns` works). */
export async function whyNoNetns (): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return `needs root to create network namespaces (running as uid ${process.getuid?.()})`
  if (!onPath('ip') || !onPath('setpriv')) return 'needs ip (iproute2) and setpriv (util-linux)'
  const probe = `remora-init-probe-${process.pid}`
  try {
    await exec('ip', ['netns', 'add', probe])
    await exec('ip', ['netns', 'del', probe])
    return undefined
  } catch (err) {
    return `ip netns add does not work here: ${(err as { stderr?: string }).stderr ?? (err as Error).message}`
  }
}

/** Why this backend cannot be tested here, or undefined. */
export const whyNoBackend = (b: Backend): string | undefined =>
  ['iptables', 'ip6tables'].every((f) => onPath(`${f}-${b}-save`) && onPath(`${f}-${b}-restore`)) ? undefined : `iptables-${b} is not installed`

interface Teardown { teardown: (fn: () => unknown) => void }

/** A new, uniquely named network namespace, deleted when the test ends (whatever happened). */
export async function netns (t: Teardown, tag: string): Promise<string> {
  const name = `remora-init-${tag}-${process.pid}`
  await exec('ip', ['netns', 'add', name])
  t.teardown(() => exec('ip', ['netns', 'del', name]))
  return name
}

export interface Ran { code: number, stdout: string, stderr: string }

/** Runs a command in the namespace (`ip netns exec`), with a clean environment plus `env`; never throws on exit codes. */
export async function inNetns (ns: string, cmd: string[], env: Record<string, string> = {}): Promise<Ran> {
  try {
    const { stdout, stderr } = await exec('ip', ['netns', 'exec', ns, ...cmd], { cwd: ROOT, env: { PATH: process.env.PATH ?? '', ...env } })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code: number, stdout: string, stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}

/** `remora init <args>` as a child process inside the namespace; `prefix` goes before node (setpriv, env PATH=…). */
export const remoraInit = (ns: string, args: string[], env: Record<string, string> = {}, prefix: string[] = []): Promise<Ran> =>
  inNetns(ns, [...prefix, process.execPath, CLI, 'init', ...args], env)

/** iptables-save of a backend, IPv4 then IPv6, without comments and counters. */
export async function saved (ns: string, backend: Backend): Promise<string> {
  const out: string[] = []
  for (const bin of [`iptables-${backend}-save`, `ip6tables-${backend}-save`]) {
    const r = await inNetns(ns, [bin])
    if (r.code !== 0) throw new Error(`${bin} failed: ${r.stderr}`)
    out.push(`# ${bin}\n${normaliseSave(r.stdout)}`)
  }
  return out.join('\n')
}

/** Both backends' state: what a dry run, a refused setting or a failed run must leave alone. */
export const savedAll = async (ns: string): Promise<string> => `${await saved(ns, 'nft')}\n${await saved(ns, 'legacy')}`

/** A long-running child whose stdout lines can be awaited one by one, in order; killed at teardown. */
export class Lines {
  readonly proc: ChildProcess
  readonly #lines: string[] = []
  readonly #waiters: Array<{ resolve: (line: string) => void, reject: (err: Error) => void }> = []
  #stderr = ''
  #closed = false

  constructor (t: Teardown, cmd: string[]) {
    this.proc = spawn(cmd[0], cmd.slice(1), { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let partial = ''
    this.proc.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      const parts = (partial + chunk).split('\n')
      partial = parts.pop() ?? ''
      for (const line of parts) {
        const w = this.#waiters.shift()
        if (w !== undefined) w.resolve(line)
        else this.#lines.push(line)
      }
    })
    this.proc.stderr?.setEncoding('utf8').on('data', (chunk: string) => { this.#stderr += chunk })
    this.proc.on('close', (code) => {
      this.#closed = true
      for (const w of this.#waiters.splice(0)) w.reject(this.#gone(code))
    })
    t.teardown(() => { if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill() })
  }

  /** The next line printed, or a rejection when the child exits first (with what it said on stderr). */
  next (): Promise<string> {
    const line = this.#lines.shift()
    if (line !== undefined) return Promise.resolve(line)
    if (this.#closed) return Promise.reject(this.#gone(this.proc.exitCode))
    return new Promise((resolve, reject) => { this.#waiters.push({ resolve, reject }) })
  }

  #gone (code: number | null): Error {
    return new Error(`${this.proc.spawnargs.join(' ')} exited (${code ?? this.proc.signalCode}) before printing another line: ${this.#stderr}`)
  }
}
