// Bench child processes: spawn (optionally CPU-pinned), wait until serving, and always clean up.
import { spawn, type ChildProcess } from 'node:child_process'
import { accessSync, closeSync, constants, openSync, readFileSync } from 'node:fs'
import net from 'node:net'
import { delimiter, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { waitForReady as waitForChildReady } from '../test/harness/ready.ts'

/** Absolute path of an executable on PATH, or undefined when it is not installed. */
export function which (cmd: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue
    const file = join(dir, cmd)
    try { accessSync(file, constants.X_OK); return file } catch { /* not here */ }
  }
  for (const dir of ['/usr/sbin', '/sbin', '/usr/local/sbin']) {
    const file = join(dir, cmd)
    try { accessSync(file, constants.X_OK); return file } catch { /* not here */ }
  }
  return undefined
}

export interface ChildOptions {
  env?: NodeJS.ProcessEnv
  /** taskset CPU list, e.g. "1"; undefined = not pinned. */
  cpus?: string
  /** stdout+stderr go to this file (the bench never reads output while load runs). */
  logFile: string
  /** Give the child a stdin pipe: our own helpers exit when it closes (the bench died). */
  stdinPipe?: boolean
}

export class Child {
  readonly name: string
  readonly proc: ChildProcess
  readonly logFile: string
  readonly exited: Promise<void>

  constructor (name: string, proc: ChildProcess, logFile: string) {
    this.name = name
    this.proc = proc
    this.logFile = logFile
    this.exited = new Promise((resolve) => proc.once('exit', () => resolve()))
  }

  get pid (): number { return this.proc.pid as number }
  get alive (): boolean { return this.proc.exitCode === null && this.proc.signalCode === null }

  /** The last part of what the child printed, for error messages. */
  tail (chars = 3000): string {
    try { return readFileSync(this.logFile, 'utf8').slice(-chars) } catch { return '' }
  }
}

const children = new Set<Child>()
let taskset: string | undefined | null = null

function tasksetPath (): string | undefined {
  if (taskset === null) taskset = which('taskset')
  return taskset
}

/** The command line that runs `cmd` on the CPUs `cpus` (taskset); as it is when unpinned or taskset is missing. */
export function pinned (cmd: string, args: string[], cpus: string | undefined): [string, string[]] {
  const taskset = cpus !== undefined ? tasksetPath() : undefined
  return taskset !== undefined ? [taskset, ['-c', cpus as string, cmd, ...args]] : [cmd, args]
}

/** Starts a process in its own process group (so the whole group can be ended by its id). */
export function startChild (name: string, cmd: string, args: string[], options: ChildOptions): Child {
  const fd = openSync(options.logFile, 'a')
  const [file, argv] = pinned(cmd, args, options.cpus)
  const proc = spawn(file, argv, {
    env: options.env ?? process.env,
    stdio: [options.stdinPipe === true ? 'pipe' : 'ignore', fd, fd],
    detached: true,
  })
  closeSync(fd)
  const child = new Child(name, proc, options.logFile)
  children.add(child)
  proc.once('exit', () => children.delete(child))
  proc.on('error', () => { /* reported through exit / readiness checks */ })
  return child
}

function killGroup (child: Child, signal: NodeJS.Signals): void {
  try { process.kill(-child.pid, signal) } catch {
    try { child.proc.kill(signal) } catch { /* already gone */ }
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the child has exited. */
export async function stopChild (child: Child, graceMs = 2000): Promise<void> {
  if (!child.alive) return
  killGroup(child, 'SIGTERM')
  const timer = setTimeout(() => killGroup(child, 'SIGKILL'), graceMs)
  await child.exited
  clearTimeout(timer)
  // The group may hold more than the leader (nginx workers): make sure none is left.
  try { process.kill(-child.pid, 'SIGKILL') } catch { /* group empty */ }
}

export async function stopAll (): Promise<void> {
  await Promise.all([...children].map((c) => stopChild(c)))
}

/** Ends every child still running, synchronously: for exit paths (errors, Ctrl-C). */
export function killAllNow (): void {
  for (const c of children) killGroup(c, 'SIGKILL')
}

let installed = false
/** Cleans up children on normal exit, uncaught errors and Ctrl-C / SIGTERM / SIGHUP. */
export function installCleanup (onSignal: () => void = () => {}): void {
  if (installed) return
  installed = true
  process.on('exit', killAllNow)
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      process.stderr.write(`\nbench: ${sig}: stopping every child process\n`)
      killAllNow()
      onSignal()
      process.exit(130)
    })
  }
}

/** Waits until something accepts TCP connections on 127.0.0.1:port (or the child dies). */
export async function waitForPort (child: Child, port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (!child.alive) throw new Error(`${child.name} exited during start-up:\n${child.tail()}`)
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1')
      s.once('connect', () => { s.destroy(); resolve(true) })
      s.once('error', () => resolve(false))
    })
    if (ok) return
    await sleep(25)
  }
  throw new Error(`${child.name} not listening on ${port} within ${timeoutMs} ms:\n${child.tail()}`)
}

/** Waits for `GET /ready` = 200 on a sidecar's admin port. */
export async function waitForReady (child: Child, adminPort: number, timeoutMs = 15_000): Promise<void> {
  await waitForChildReady(child.name, `http://127.0.0.1:${adminPort}`, child.proc, () => child.tail(), timeoutMs)
}

/** Runs a command to completion (a load generator), pinned if asked; resolves with its output. */
export async function runToEnd (name: string, cmd: string, args: string[], options: ChildOptions & { timeoutMs: number }): Promise<{ code: number | null, output: string }> {
  const child = startChild(name, cmd, args, options)
  const timer = setTimeout(() => killGroup(child, 'SIGKILL'), options.timeoutMs)
  await child.exited
  clearTimeout(timer)
  return { code: child.proc.exitCode, output: readFileSync(options.logFile, 'utf8') }
}
