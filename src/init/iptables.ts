// Runs iptables-save / iptables-restore of one backend and family, picks the backend, and turns failures into RemoraErrors.
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { RemoraError } from '../errors.ts'
import type { Family } from './rules.ts'

export type Backend = 'nft' | 'legacy'
export const BACKENDS: readonly Backend[] = ['nft', 'legacy']

export const binaryOf = (backend: Backend, family: Family, tool: 'save' | 'restore'): string =>
  `${family === 'ipv6' ? 'ip6tables' : 'iptables'}-${backend}-${tool}`

const FAMILY_NAME: Record<Family, string> = { ipv4: 'IPv4', ipv6: 'IPv6' }
const NEED_PRIVILEGE = 'remora init must run as root with the NET_ADMIN and NET_RAW capabilities: on the init container set securityContext.runAsUser: 0 and capabilities.add: [NET_ADMIN, NET_RAW]'

/** What a failed run left: enough to say what went wrong. */
export interface Failure {
  readonly bin: string
  readonly family: Family
  /** errno name when the binary could not be started (ENOENT), else undefined. */
  readonly spawnError?: string
  readonly exitCode?: number | null
  readonly stderr: string
  /** The restore input, to quote the line iptables names. */
  readonly input?: string
  readonly path?: string
}

/** Classifies a failed iptables run: missing binary, missing privilege, a refused rule, or anything else. */
export function failureError (f: Failure): RemoraError {
  if (f.spawnError === 'ENOENT') {
    return new RemoraError('REMORA_INIT_IPTABLES_MISSING', `${f.bin} not found in PATH (${f.path ?? ''}): install the iptables package in the image (Debian: apt-get install iptables, which brings both backends), or choose the other backend with --iptables`)
  }
  const detail = f.stderr.split('\n').map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('Try `') && !l.startsWith('Error occurred at line')).join('; ')
  if (/permission denied|you must be root|operation not permitted/i.test(f.stderr)) {
    return new RemoraError('REMORA_INIT_PERMISSION', `${f.bin} was refused (${detail}): ${NEED_PRIVILEGE}`)
  }
  const at = /line:? (\d+)/.exec(f.stderr)
  const line = at === null ? undefined : f.input?.split('\n')[Number(at[1]) - 1]
  if (at !== null && line !== undefined && line !== '') {
    const n = Number(at[1])
    const what = line === 'COMMIT'
      ? `the kernel refused the ${FAMILY_NAME[f.family]} nat table at COMMIT (line ${n}; this backend checks all rules at once and does not say which one: the kernel log, dmesg, does; remora init --dry-run prints them)`
      : `the ${FAMILY_NAME[f.family]} rule at line ${n} was refused: "${line}"`
    return new RemoraError('REMORA_INIT_RULE_REFUSED', `${f.bin}: ${what} (${detail}); none of the ${FAMILY_NAME[f.family]} rules were applied`)
  }
  return new RemoraError('REMORA_INIT_IPTABLES', `${f.bin} failed (${f.spawnError ?? `exit code ${f.exitCode}`}): ${detail || 'no message'}`)
}

function run (bin: string, family: Family, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(bin, args, { timeout: 60_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err === null) { resolve(stdout); return }
      const e = err as NodeJS.ErrnoException & { code?: string | number, killed?: boolean }
      const spawnError = typeof e.code === 'string' ? e.code : e.killed === true ? 'no answer within 60 s' : undefined
      reject(failureError({ bin, family, spawnError, exitCode: typeof e.code === 'number' ? e.code : null, stderr, input, path: process.env.PATH }))
    })
    child.stdin?.on('error', () => { /* the process died early: its exit says why */ })
    child.stdin?.end(input ?? '')
  })
}

/** iptables-save of one backend and family, all tables or one (legacy creates the table it is asked for). */
export const save = (backend: Backend, family: Family, table?: 'nat'): Promise<string> =>
  run(binaryOf(backend, family, 'save'), family, table === undefined ? [] : ['-t', table])

/** One transaction: iptables-restore --noflush (waiting for the xtables lock up to 10 s). */
export const restore = async (backend: Backend, family: Family, text: string): Promise<void> => {
  await run(binaryOf(backend, family, 'restore'), family, ['--noflush', '--wait=10'], text)
}

/** None of these binaries could be found. */
export const noIptables = (bins: readonly string[]): RemoraError =>
  new RemoraError('REMORA_INIT_IPTABLES_MISSING', `no iptables found: looked for ${bins.join(', ')} in PATH (${process.env.PATH ?? ''}); install the iptables package in the image (Debian: apt-get install iptables, which brings both backends)`)

const HINTS = /^:(KUBE-IPTABLES-HINT|KUBE-KUBELET-CANARY) /m
const ruleCount = (text: string): number => text.split('\n').filter((l) => l.startsWith('-A ')).length

/**
 * auto: the backend that already holds rules (kubelet's hint chains first, then the most rules,
 * remora's own included, so a second run picks the same one), else nft when it works, else legacy.
 */
export async function detectBackend (): Promise<{ backend: Backend, why: string }> {
  const seen = await Promise.all(BACKENDS.map(async (backend) => {
    try {
      const v4 = await save(backend, 'ipv4')
      const v6 = await save(backend, 'ipv6').catch(() => '')
      return { backend, text: v4 + v6 }
    } catch (err) {
      return { backend, err: err as RemoraError }
    }
  }))
  const denied = seen.find((s) => s.err?.code === 'REMORA_INIT_PERMISSION')
  if (denied?.err !== undefined) throw denied.err
  const working = seen.filter((s) => s.text !== undefined).map((s) => ({ backend: s.backend, text: s.text ?? '' }))
  if (working.length === 0) {
    if (seen.every((s) => s.err?.code === 'REMORA_INIT_IPTABLES_MISSING')) throw noIptables(BACKENDS.map((b) => binaryOf(b, 'ipv4', 'save')))
    throw seen[0].err ?? new RemoraError('REMORA_INIT_IPTABLES', 'no iptables backend works')
  }
  const hinted = working.find((w) => HINTS.test(w.text))
  if (hinted !== undefined) return { backend: hinted.backend, why: 'it holds the kubelet hint chains' }
  const most = [...working].sort((a, b) => ruleCount(b.text) - ruleCount(a.text))[0]
  if (ruleCount(most.text) > 0) return { backend: most.backend, why: `it already holds ${ruleCount(most.text)} rules` }
  const why = working.length < BACKENDS.length ? `the other does not work (${seen.find((s) => s.err)?.err?.message})` : 'no backend holds rules yet; nft preferred'
  return { backend: working[0].backend, why }
}

/** Why IPv6 rules cannot go in with this backend, or undefined when they can. Missing privilege still throws. */
export async function ipv6Unusable (backend: Backend, ifInet6 = '/proc/net/if_inet6'): Promise<string | undefined> {
  if (!existsSync(ifInet6)) return `the kernel has no IPv6 (${ifInet6} is missing)`
  try {
    await save(backend, 'ipv6', 'nat')
    return undefined
  } catch (err) {
    if ((err as RemoraError).code === 'REMORA_INIT_PERMISSION') throw err
    return `ip6tables nat does not work: ${(err as Error).message}`
  }
}
