// Test and bench harness: asks a child's admin /ready, bounded, and waits for it to answer 200.
import type { ChildProcess } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'

/**
 * How long a test's child (sidecar, control plane) may take to start: a guard against a hang, not a
 * speed check. Unloaded, a sidecar is ready in under 1 s and a Kubernetes-sourced control plane in
 * 1.5 s, but both are mostly CPU (module loading), and with two test files starting five processes
 * at once on two cores a control plane once took 17.8 s.
 */
export const START_TIMEOUT_MS = 60_000

export interface ReadyAnswer { status: number, body: string }

/** One ask of /ready, bounded at 2 s (one that hangs must not take a whole wait): its answer, or why asking failed. */
export async function askReady (adminUrl: string): Promise<ReadyAnswer | { error: string }> {
  try {
    const res = await fetch(`${adminUrl}/ready`, { signal: AbortSignal.timeout(2_000) })
    return { status: res.status, body: await res.text() }
  } catch (err) {
    return { error: `${(err as Error).message} ${String((err as { cause?: { code?: string } }).cause?.code ?? '')}`.trim() }
  }
}

/** Throws if the child has exited (by itself or by a signal), with what it printed. */
export function assertRunning (what: string, proc: ChildProcess, output: () => string): void {
  if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`${what} exited with ${proc.exitCode ?? proc.signalCode}:\n${output()}`)
}

/**
 * Waits for /ready to answer 200. The error says what /ready last answered, when, and what the
 * child printed.
 */
export async function waitForReady (what: string, adminUrl: string, proc: ChildProcess, output: () => string, timeoutMs = START_TIMEOUT_MS): Promise<void> {
  const started = Date.now()
  const deadline = started + timeoutMs
  let last = 'no answer yet'
  let asks = 0
  while (Date.now() < deadline) {
    assertRunning(what, proc, output)
    asks++
    const asked = Date.now()
    const answer = await askReady(adminUrl)
    if ('status' in answer && answer.status === 200) return
    last = `${'error' in answer ? answer.error : `${answer.status} ${answer.body.trim()}`} (ask ${asks}, ${Date.now() - asked} ms, ${asked - started} ms in)`
    await sleep(50)
  }
  throw new Error(`${what} not ready within ${timeoutMs} ms (last /ready: ${last}):\n${output()}`)
}

/**
 * Waits for a child to have printed `count` lines that `match` (those it printed already count): each
 * line is looked at once, as it arrives, so a test can wait on a log line instead of polling for its
 * effect. The timeout is a guard against a hang, not a speed check; the error says how many it saw.
 */
export async function waitForLines (what: string, proc: ChildProcess, output: () => string, match: (line: string) => boolean, count = 1, timeoutMs = START_TIMEOUT_MS): Promise<void> {
  const printed = output()
  const cut = printed.lastIndexOf('\n') + 1
  let seen = printed.slice(0, cut).split('\n').filter(match).length
  let partial = printed.slice(cut)
  if (seen >= count) return
  const stdout = proc.stdout
  if (stdout === null) throw new Error(`${what}: its stdout is not piped`)
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      const lines = (partial + chunk.toString()).split('\n')
      partial = lines.pop() ?? ''
      seen += lines.filter(match).length
      if (seen >= count) finish()
    }
    const onExit = (): void => finish(new Error(`${what} exited with ${proc.exitCode ?? proc.signalCode} after ${seen} of the ${count} lines awaited:\n${output()}`))
    const timer = setTimeout(() => finish(new Error(`${what}: ${seen} of the ${count} lines awaited within ${timeoutMs} ms`)), timeoutMs)
    function finish (err?: Error): void {
      clearTimeout(timer)
      stdout?.off('data', onData)
      proc.off('exit', onExit)
      if (err === undefined) resolve()
      else reject(err)
    }
    stdout.on('data', onData)
    proc.once('exit', onExit)
    if (proc.exitCode !== null || proc.signalCode !== null) onExit()
  })
}
