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
