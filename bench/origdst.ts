// The origdst case of `npm run bench`: what src/transport/original-dst.ts's lookup(socket) costs per
// connection. As root with `ip` and iptables: a network namespace of our own, a nat OUTPUT REDIRECT
// rule sending TEST-NET-1 192.0.2.10:3306 to a listener in it, and origdst-worker.ts timing lookup()
// on redirected and on direct connections. Otherwise the worker runs here, on direct connections
// only (the same getsockopt, answered ENOENT), and the result says so. The namespace is deleted
// whatever happens (and one left by a bench that was killed, at the next run).
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { OrigDstWorkerOptions, OrigDstWorkerResult } from './origdst-worker.ts'
import { freePort } from '../test/harness/mesh.ts'
import { runToEnd, which } from './procs.ts'
import type { TcpRun } from './tcp.ts'
import type { Env } from './topologies.ts'

const WORKER = new URL('origdst-worker.ts', import.meta.url).pathname
const NS_PREFIX = 'remora-bench-od-'
/** TEST-NET-1 (RFC 5737): routed nowhere, so only the REDIRECT rule can answer it. */
const REDIRECTED = { host: '192.0.2.10', port: 3306 }
const LISTEN_PORT = 15001

export interface OrigDstResult extends OrigDstWorkerResult {
  /** `netns`: redirected connections measured; `fallback`: direct connections only (see `note`). */
  mode: 'netns' | 'fallback'
  note: string
}

/** Why no namespace can be built here, or undefined. */
function netnsUnavailable (): string | undefined {
  if (process.platform !== 'linux') return `not Linux (${process.platform})`
  if (process.getuid?.() !== 0) return 'not root (a network namespace and an iptables rule need CAP_NET_ADMIN / CAP_SYS_ADMIN)'
  if (which('ip') === undefined) return '`ip` (iproute2) not found'
  if (which('iptables') === undefined) return '`iptables` not found'
  return undefined
}

function run (cmd: string, args: string[]): void {
  try {
    execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 15_000 })
  } catch (err) {
    const stderr = String((err as { stderr?: Buffer }).stderr ?? '').trim()
    throw new Error(`${cmd} ${args.join(' ')}: ${stderr === '' ? (err as Error).message : stderr}`, { cause: err })
  }
}

function pidAlive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch (err) { return (err as NodeJS.ErrnoException).code === 'EPERM' }
}

/** Deletes a namespace (and kills what still runs in it); quiet, for cleanup paths. */
function deleteNamespace (ns: string): void {
  try {
    const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'] })
    for (const pid of pids.split('\n').filter((p) => p !== '')) {
      try { process.kill(Number(pid), 'SIGKILL') } catch { /* gone */ }
    }
  } catch { /* no such namespace */ }
  try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: 10_000 }) } catch { /* gone already */ }
}

/** Namespaces of benches that died before cleaning up (their pid is in the name). */
function removeStale (): void {
  let names: string[]
  try { names = readdirSync('/run/netns') } catch { return }
  for (const name of names) {
    const m = new RegExp(`^${NS_PREFIX}(\\d+)$`).exec(name)
    if (m !== null && !pidAlive(Number(m[1]))) deleteNamespace(name)
  }
}

/** The namespace with loopback up, 192.0.2.10 routed to it and the nat OUTPUT REDIRECT rule. */
function buildNamespace (ns: string): void {
  run('ip', ['netns', 'add', ns])
  run('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
  // A route to the original destination (connect() needs one before nat OUTPUT rewrites it).
  run('ip', ['-n', ns, 'addr', 'add', `${REDIRECTED.host}/32`, 'dev', 'lo'])
  run('ip', ['netns', 'exec', ns, 'iptables', '-w', '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '-d', REDIRECTED.host, '--dport', String(REDIRECTED.port), '-j', 'REDIRECT', '--to-ports', String(LISTEN_PORT)])
}

/** The original-dst module of the checkout that runs (working tree or --rev): the bundle has no module of its own. */
function moduleOf (root: string): string {
  return join(root, 'src/transport/original-dst.ts')
}

export async function runOrigDst (env: Env, t: TcpRun): Promise<{ origDst: OrigDstResult }> {
  const options: OrigDstWorkerOptions = { module: moduleOf(env.root), listenPort: LISTEN_PORT, connections: 1000, loop: 200_000 }
  let why = netnsUnavailable()
  const ns = `${NS_PREFIX}${process.pid}`
  let built = false
  const atExit = (): void => { if (built) deleteNamespace(ns) }
  process.on('exit', atExit)
  try {
    if (why === undefined) {
      removeStale()
      try {
        built = true
        buildNamespace(ns)
      } catch (err) {
        why = `could not build the namespace: ${(err as Error).message}`
        deleteNamespace(ns)
        built = false
      }
    }
    const n = t.ctx.seq()
    const file = join(t.ctx.tmp, `origdst-${n}.json`)
    const logFile = join(t.ctx.tmp, `origdst-${n}.out`)
    let cmd = process.execPath
    let args = [WORKER, file]
    if (built) {
      options.redirect = REDIRECTED
      cmd = 'ip'
      args = ['netns', 'exec', ns, process.execPath, ...args]
      t.log(`  namespace ${ns}: nat OUTPUT REDIRECT ${REDIRECTED.host}:${REDIRECTED.port} → 127.0.0.1:${LISTEN_PORT}; ${options.connections} redirected + ${options.connections} direct connections…`)
    } else {
      // Any free port will do outside a namespace of our own.
      options.listenPort = await freePort()
      t.log(`  no redirection (${why}): timing lookup() on ${options.connections} direct connections (getsockopt answers ENOENT)…`)
    }
    writeFileSync(file, JSON.stringify(options))
    await t.waitQuiet()
    const { code, output } = await runToEnd('origdst', cmd, args, { cpus: t.ctx.cpus, logFile, timeoutMs: 120_000 })
    const line = output.trim().split('\n').filter((l) => l.startsWith('{')).pop()
    if (code !== 0 || line === undefined) throw new Error(`origdst worker failed (exit ${code}):\n${readFileSync(logFile, 'utf8').slice(-2000)}`)
    const result = JSON.parse(line) as OrigDstWorkerResult
    if (!result.available) throw new Error(`originalDstLookup() is unavailable here: ${result.why ?? '?'}`)
    if ((result.redirected?.wrong ?? 0) > 0 || (result.direct?.wrong ?? 0) > 0) {
      throw new Error(`lookup() returned the wrong answer: redirected ${result.redirected?.wrong ?? 0} times (e.g. ${result.redirected?.sample}), direct ${result.direct?.wrong ?? 0} times (e.g. ${result.direct?.sample})`)
    }
    return {
      origDst: {
        ...result,
        mode: built ? 'netns' : 'fallback',
        note: built
          ? `network namespace, nat OUTPUT REDIRECT ${REDIRECTED.host}:${REDIRECTED.port} → 127.0.0.1:${LISTEN_PORT}`
          : `NOT redirected (${why}): direct connections only, where getsockopt(SO_ORIGINAL_DST) fails with ENOENT — the same syscall, not the redirected answer`,
      },
    }
  } finally {
    if (built) deleteNamespace(ns)
    built = false
    process.off('exit', atExit)
  }
}
