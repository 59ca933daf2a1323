// Test harness: "pods" as real network namespaces on a bridge of their own, with their processes, relays to root-namespace services and packet captures.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import dgram from 'node:dgram'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { ROOT, type Teardown } from './mesh.ts'
import { START_TIMEOUT_MS } from './ready.ts'

/** The uid (and gid) sidecars run as in the interception tests: iptables rules exempt its traffic (`-m owner --uid-owner`). */
export const SIDECAR_UID = 2102

/**
 * Naming, all ours alone: fabric `id` (a slot, 0..12799) owns the bridge `rmr<id>b` (its alias names the
 * owning process), the host ends of its veths `rmr<id>p<i>`, the namespaces `remora-<id>-<pod>` and the
 * subnet 10.(200 + id / 256).(id % 256).0/24. Interface names stay within Linux's 15 characters.
 */
const SLOTS = 50 * 256
const NS_RE = /^remora-(\d+)-[a-z][a-z0-9-]*$/
const LINK_RE = /^rmr(\d+)(b|p\d+)$/
const POD_RE = /^[a-z][a-z0-9-]{0,30}$/
/** An abstract unix socket: held while a process cleans up and claims a slot, released by the kernel when it dies. */
const LOCK = '\0remora-netns-harness'
const MARKER = 'remora-capture-sync:'
const SYNC_PORT = 9
const STOP_GRACE_MS = 3_000

const bridgeName = (id: number): string => `rmr${id}b`
const vethName = (id: number, index: number): string => `rmr${id}p${index}`
const subnetOf = (id: number): string => `10.${200 + Math.floor(id / 256)}.${id % 256}`
const subnet6Of = (id: number): string => `fd72:656d:${id.toString(16)}:0`

/** Why netns tests cannot run here (they then skip with it), or false. */
export function netnsSkipReason (): string | false {
  if (process.platform !== 'linux') return 'network namespaces need Linux'
  if (process.getuid?.() !== 0) return 'needs root: creates network namespaces, veths and a bridge (run as root)'
  for (const tool of ['ip', 'setpriv', 'tcpdump']) {
    try { execFileSync(tool, tool === 'ip' ? ['-V'] : ['--version'], { stdio: 'ignore' }) } catch { return `needs \`${tool}\` (iproute2, util-linux, tcpdump)` }
  }
  return false
}

// ---------------------------------------------------------------------------------------------
// Commands

/** Runs a command to completion; rejects with its stderr. */
function exec (cmd: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { encoding: 'utf8', timeout: START_TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err === null) resolve(stdout)
      else reject(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`))
    })
    if (input !== undefined) child.stdin?.end(input)
  })
}

const GONE = /Cannot find device|No such file|does not exist|not found/i

/** `ip …` where "already gone" is success: for deletions. */
async function ipGone (args: string[]): Promise<void> {
  try { await exec('ip', args) } catch (err) { if (!GONE.test((err as Error).message)) throw err }
}

function ipGoneSync (args: string[]): void {
  try { execFileSync('ip', args, { stdio: 'ignore', timeout: 10_000 }) } catch { /* best effort, at exit */ }
}

function killGroup (pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return
  try { process.kill(-pid, signal) } catch { /* gone already */ }
}

/** Every process in a namespace (any uid), SIGKILLed: they would keep it alive after `ip netns del`. */
async function killNamespace (ns: string): Promise<void> {
  let pids: string
  try { pids = await exec('ip', ['netns', 'pids', ns]) } catch { return }
  for (const pid of pids.split('\n').filter((p) => p !== '')) {
    try { process.kill(Number(pid), 'SIGKILL') } catch { /* gone already */ }
  }
}

function killNamespaceSync (ns: string): void {
  let pids: string
  try { pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', timeout: 10_000 }) } catch { return }
  for (const pid of pids.split('\n').filter((p) => p !== '')) {
    try { process.kill(Number(pid), 'SIGKILL') } catch { /* gone already */ }
  }
}

// ---------------------------------------------------------------------------------------------
// Ownership, stale cleanup and slot claims

/** A process's start time (clock ticks since boot), so a reused pid is not taken for its predecessor; undefined when gone or a zombie. */
function startTime (pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return fields[0] === 'Z' || fields[0] === 'X' ? undefined : fields[19]
  } catch {
    return undefined
  }
}

/** Whether `pid` is running (a zombie is not). */
export function isAlive (pid: number): boolean { return startTime(pid) !== undefined }

const OWNER = `remora-netns pid=${process.pid} start=${startTime(process.pid)}`

function ownerAlive (alias: string): boolean {
  const m = /pid=(\d+) start=(\d+)/.exec(alias)
  return m !== null && startTime(Number(m[1])) === m[2]
}

function readAlias (link: string): string {
  try { return readFileSync(`/sys/class/net/${link}/ifalias`, 'utf8').trim() } catch { return '' }
}

function listNamespaces (): string[] {
  try { return readdirSync('/run/netns').filter((n) => NS_RE.test(n)) } catch { return [] }
}

function listLinks (): string[] {
  try { return readdirSync('/sys/class/net').filter((n) => LINK_RE.test(n)) } catch { return [] }
}

const slotOf = (name: string): number => Number((NS_RE.exec(name) ?? LINK_RE.exec(name) as RegExpExecArray)[1])

/** The namespaces and links with this harness's names (of fabric `id`, or of all): what a test asserts is gone after teardown. */
export function leftovers (id?: number): { namespaces: string[], links: string[] } {
  const mine = (name: string): boolean => id === undefined || slotOf(name) === id
  return { namespaces: listNamespaces().filter(mine).sort(), links: listLinks().filter(mine).sort() }
}

async function withLock<T> (fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + START_TIMEOUT_MS
  for (let wait = 5; ; wait = Math.min(wait * 2, 200)) {
    const server = net.createServer()
    const held = await new Promise<boolean>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => { if (err.code === 'EADDRINUSE') resolve(false); else reject(err) })
      server.listen({ path: LOCK }, () => resolve(true))
    })
    if (held) {
      server.unref()
      try { return await fn() } finally { server.close() }
    }
    // No event tells us another process let go of an abstract socket: retry, bounded.
    if (Date.now() > deadline) throw new Error(`netns harness: another process held the fabric lock for over ${START_TIMEOUT_MS} ms`)
    await sleep(wait)
  }
}

/**
 * Removes what killed runs left (their owner, named in the bridge's alias, is gone; or there is no bridge):
 * processes in their namespaces, veths, namespaces, bridges. Only names of this harness. Run under the lock;
 * owners create the bridge before their namespaces and delete it after them, so namespaces are listed first.
 * Returns the slots owned by live processes.
 */
async function cleanStale (): Promise<Set<number>> {
  const namespaces = listNamespaces()
  const links = listLinks()
  const live = new Set(links.filter((l) => l.endsWith('b') && ownerAlive(readAlias(l))).map(slotOf))
  const staleNs = namespaces.filter((n) => !live.has(slotOf(n)))
  const staleLinks = links.filter((l) => !live.has(slotOf(l)))
  await Promise.all(staleNs.map(killNamespace))
  await Promise.all(staleLinks.filter((l) => !l.endsWith('b')).map((l) => ipGone(['link', 'del', l])))
  await Promise.all(staleNs.map((n) => ipGone(['netns', 'del', n])))
  await Promise.all(staleLinks.filter((l) => l.endsWith('b')).map((l) => ipGone(['link', 'del', l])))
  return live
}

function ipv4 (s: string): number { return s.split('.').reduce((n, o) => n * 256 + Number(o), 0) }

/** Whether a root-namespace route's destination overlaps a.b.c.0/24 (the default route does not count). */
function overlaps (dst: string, subnet: string): boolean {
  if (dst === 'default') return false
  const [addr, bits = '32'] = dst.split('/')
  const len = Number(bits)
  if (len === 0 || !/^\d+\.\d+\.\d+\.\d+$/.test(addr)) return false
  const common = Math.min(len, 24)
  const mask = common === 0 ? 0 : (0xffffffff << (32 - common)) >>> 0
  return ((ipv4(addr) & mask) >>> 0) === ((ipv4(`${subnet}.0`) & mask) >>> 0)
}

let fabricsCreated = 0

/** Claims a free slot (under the lock): its bridge, created with the owner in its alias. */
async function claimSlot (live: Set<number>): Promise<number> {
  const routes = (JSON.parse(await exec('ip', ['-j', '-4', 'route', 'show', 'table', 'all'])) as Array<{ dst?: string }>).map((r) => r.dst ?? '')
  const left = leftovers()
  const used = new Set([...left.namespaces, ...left.links].map(slotOf))
  // A start derived from the pid and a counter, so parallel jobs usually begin apart; the bridge's creation is the claim.
  const start = (process.pid * 64 + fabricsCreated++) % SLOTS
  for (let i = 0; i < SLOTS; i++) {
    const id = (start + i) % SLOTS
    if (live.has(id) || used.has(id) || routes.some((dst) => overlaps(dst, subnetOf(id)))) continue
    try {
      await exec('ip', ['link', 'add', bridgeName(id), 'type', 'bridge'])
    } catch (err) {
      if (/File exists/.test((err as Error).message)) continue
      throw err
    }
    try {
      await exec('ip', ['link', 'set', 'dev', bridgeName(id), 'alias', OWNER])
    } catch (err) {
      await ipGone(['link', 'del', bridgeName(id)])
      throw err
    }
    return id
  }
  throw new Error('netns harness: no free /24 in 10.200.0.0-10.249.255.0 (every slot is taken or overlaps a route)')
}

// ---------------------------------------------------------------------------------------------
// Processes in pods

export interface PodSpawnOptions {
  /** Run as this uid (via setpriv, supplementary groups cleared); default root. */
  uid?: number
  /** Default: `uid`. */
  gid?: number
  /** Added to a clean environment holding only PATH (no *_proxy or NODE_OPTIONS leaks in). */
  env?: Record<string, string>
  /** Default: the repository's root. */
  cwd?: string
  /** Default 'ignore' (stdin is /dev/null). */
  stdin?: 'pipe' | 'ignore'
}

export interface PodRunOptions extends PodSpawnOptions {
  /** Written to stdin, which is then closed. */
  input?: string
  /** A guard against a hang (the process group is killed and the promise rejects); default START_TIMEOUT_MS. */
  timeoutMs?: number
}

export interface RunResult { code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string }

export type LineMatch = string | RegExp | ((line: string) => boolean)

/** A process in a pod: a ChildProcess (`ip netns exec` execs into it, so its pid is the process's), plus what tests need. */
export type PodProcess = ChildProcess & {
  /** For messages: `cmd` in pod `name`. */
  readonly what: string
  /** Everything it printed so far, stdout and stderr interleaved as they arrived. */
  output (): string
  /**
   * Resolves with the `count`th line (stdout or stderr, those printed already count) that matches; rejects
   * if it exits first or after `timeoutMs` (a guard against a hang, not a speed check), with its output.
   */
  waitForLine (match: LineMatch, count?: number, timeoutMs?: number): Promise<string>
  /** SIGTERM to its process group, SIGKILL to the group after `graceMs` without an exit; resolves with its exit code. */
  stop (graceMs?: number): Promise<number | null>
}

function matcher (match: LineMatch): (line: string) => boolean {
  if (typeof match === 'string') return (l) => l.includes(match)
  if (match instanceof RegExp) return (l) => match.test(l)
  return match
}

function hasExited (proc: ChildProcess): boolean { return proc.exitCode !== null || proc.signalCode !== null }

async function stopGroup (proc: ChildProcess, graceMs: number): Promise<number | null> {
  if (proc.pid === undefined) return null
  const exited = new Promise<void>((resolve) => { if (hasExited(proc)) resolve(); else proc.once('exit', () => resolve()) })
  if (!hasExited(proc)) {
    killGroup(proc.pid, 'SIGTERM')
    let timer: NodeJS.Timeout | undefined
    await Promise.race([exited, new Promise<void>((resolve) => { timer = setTimeout(resolve, graceMs) })])
    clearTimeout(timer)
  }
  // Also whatever it started that is still in its group.
  killGroup(proc.pid, 'SIGKILL')
  await exited
  return proc.exitCode
}

function podProcess (child: ChildProcess, what: string): PodProcess {
  let output = ''
  const lines: string[] = []
  const waiters = new Set<() => void>()
  const notify = (): void => { for (const w of waiters) w() }
  for (const stream of [child.stdout, child.stderr]) {
    let partial = ''
    stream?.setEncoding('utf8')
    stream?.on('data', (chunk: string) => {
      output += chunk
      const parts = (partial + chunk).split('\n')
      partial = parts.pop() ?? ''
      if (parts.length > 0) { lines.push(...parts); notify() }
    })
    stream?.on('end', () => { if (partial !== '') { lines.push(partial); partial = ''; notify() } })
  }
  child.on('error', (err) => { output += `\n[spawn error: ${err.message}]`; notify() })
  // 'close', not 'exit': by then everything it printed has been read.
  let closed = false
  child.on('close', () => { closed = true; notify() })
  const waitForLine = (match: LineMatch, count = 1, timeoutMs = START_TIMEOUT_MS): Promise<string> => {
    const test = matcher(match)
    let scanned = 0
    let seen = 0
    return new Promise((resolve, reject) => {
      const check = (): void => {
        // Each line is looked at once.
        for (; scanned < lines.length; scanned++) {
          if (test(lines[scanned]) && ++seen === count) { finish(undefined, lines[scanned]); return }
        }
        if (closed || child.pid === undefined) {
          finish(new Error(`${what} exited with ${child.exitCode ?? child.signalCode} after ${seen} of the ${count} lines awaited:\n${output}`))
        }
      }
      const timer = setTimeout(() => finish(new Error(`${what}: ${seen} of the ${count} lines awaited within ${timeoutMs} ms:\n${output}`)), timeoutMs)
      function finish (err: Error | undefined, line = ''): void {
        clearTimeout(timer)
        waiters.delete(check)
        if (err === undefined) resolve(line)
        else reject(err)
      }
      waiters.add(check)
      check()
    })
  }
  return Object.assign(child, {
    what,
    output: () => output,
    waitForLine,
    stop: (graceMs = STOP_GRACE_MS) => stopGroup(child, graceMs),
  })
}

export class Pod {
  readonly name: string
  /** The network namespace: `remora-<id>-<name>`. */
  readonly ns: string
  readonly ip: string
  /** Its ULA address, when the fabric has IPv6. */
  readonly ip6: string | undefined
  /** The host (root-namespace) end of its veth, on the bridge; inside, the pod's end is `eth0`. */
  readonly veth: string
  readonly #track: (p: PodProcess) => void

  constructor (name: string, ns: string, ip: string, ip6: string | undefined, veth: string, track: (p: PodProcess) => void) {
    this.name = name
    this.ns = ns
    this.ip = ip
    this.ip6 = ip6
    this.veth = veth
    this.#track = track
  }

  /**
   * Starts `cmd` in the pod (`ip netns exec <ns> setpriv [--reuid --regid --clear-groups] --pdeathsig SIGKILL -- cmd …`),
   * in a process group of its own, output piped; killed at teardown. The parent-death signal kills it if the test
   * process dies without tearing down.
   */
  spawn (cmd: string, args: string[] = [], opts: PodSpawnOptions = {}): PodProcess {
    const ids = opts.uid === undefined ? [] : ['--reuid', String(opts.uid), '--regid', String(opts.gid ?? opts.uid), '--clear-groups']
    const child = spawn('ip', ['netns', 'exec', this.ns, 'setpriv', ...ids, '--pdeathsig', 'SIGKILL', '--', cmd, ...args], {
      cwd: opts.cwd ?? ROOT,
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...opts.env },
      stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'],
      detached: true,
    })
    const p = podProcess(child, `${cmd} in pod ${this.name}${opts.uid === undefined ? '' : ` (uid ${opts.uid})`}`)
    this.#track(p)
    return p
  }

  /** `spawn` of this Node (process.execPath, Node 24) with `args` (a script and its arguments, or flags like `-e`). */
  node (args: string | string[], opts: PodSpawnOptions = {}): PodProcess {
    return this.spawn(process.execPath, typeof args === 'string' ? [args] : args, opts)
  }

  /** Runs `cmd` in the pod to completion: its exit code and output (a non-zero code resolves too). */
  async run (cmd: string, args: string[] = [], opts: PodRunOptions = {}): Promise<RunResult> {
    const p = this.spawn(cmd, args, { ...opts, stdin: opts.input === undefined ? opts.stdin : 'pipe' })
    if (opts.input !== undefined) p.stdin?.end(opts.input)
    const stdout: string[] = []
    const stderr: string[] = []
    p.stdout?.on('data', (c: string) => stdout.push(c))
    p.stderr?.on('data', (c: string) => stderr.push(c))
    const timeoutMs = opts.timeoutMs ?? START_TIMEOUT_MS
    let timedOut = false
    const timer = setTimeout(() => { timedOut = true; killGroup(p.pid, 'SIGKILL') }, timeoutMs)
    try {
      const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
        p.once('error', reject)
        // 'exit', then the rest of its group (which would hold the pipes open), then 'close' once the pipes are drained.
        p.once('exit', () => killGroup(p.pid, 'SIGKILL'))
        p.once('close', (c, s) => resolve([c, s]))
      })
      if (timedOut) throw new Error(`${p.what} did not finish within ${timeoutMs} ms:\n${p.output()}`)
      return { code, signal, stdout: stdout.join(''), stderr: stderr.join('') }
    } finally {
      clearTimeout(timer)
    }
  }
}

/**
 * Waits until `port` accepts a TCP connection in `pod` (on `host`, default 127.0.0.1, which a server bound to
 * 0.0.0.0 also answers on). No event crosses namespaces, so one Node process in the pod polls with backoff
 * (10 ms doubling to 250 ms) up to `timeoutMs`. Prefer a server that prints a line once listening (`waitForLine`).
 */
export async function waitForListen (pod: Pod, port: number, opts: { host?: string, timeoutMs?: number } = {}): Promise<void> {
  const host = opts.host ?? '127.0.0.1'
  const timeoutMs = opts.timeoutMs ?? START_TIMEOUT_MS
  const script = `
    const net = require('node:net')
    const [host, port, timeoutMs] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])]
    const deadline = Date.now() + timeoutMs
    let wait = 10
    const attempt = () => {
      const s = net.connect(port, host)
      s.once('connect', () => { s.destroy(); process.exit(0) })
      s.once('error', (err) => {
        if (Date.now() + wait > deadline) { console.error(err.code || err.message); process.exit(1) }
        setTimeout(attempt, wait); wait = Math.min(wait * 2, 250)
      })
    }
    attempt()`
  const r = await pod.run(process.execPath, ['-e', script, host, String(port), String(timeoutMs)], { timeoutMs: timeoutMs + START_TIMEOUT_MS })
  if (r.code !== 0) throw new Error(`${host}:${port} in pod ${pod.name} (${pod.ns}) did not accept within ${timeoutMs} ms (last: ${r.stderr.trim() || `exit ${r.code ?? r.signal}`})`)
}

// ---------------------------------------------------------------------------------------------
// Relays and captures

export interface Forward {
  /** The bridge's address, which every pod reaches. */
  readonly host: string
  readonly port: number
  /** `host:port`. */
  readonly address: string
  close (): Promise<void>
}

export interface TcpStream { src: string, sport: number, dst: string, dport: number, data: Buffer }
export interface ClientHello { src: string, sport: number, dst: string, dport: number, sni: string | undefined, alpn: string[] }

/** What a capture saw (the harness's sync packets left out): the pcap file, frames, reassembled TCP streams, TLS ClientHellos. */
export class Captured {
  readonly path: string
  /** The whole pcap file. */
  readonly pcap: Buffer
  readonly #filterOut: string

  constructor (path: string, pcap: Buffer, filterOut: string) {
    this.path = path
    this.pcap = pcap
    this.#filterOut = filterOut
  }

  /** Each captured frame (Ethernet), in order. */
  frames (): Buffer[] {
    return pcapFrames(this.pcap).filter((f) => !f.includes(MARKER))
  }

  /** Each TCP direction's payload, reassembled in sequence order, e.g. `10.200.3.2:40112 > 10.200.3.3:8080`. */
  streams (): TcpStream[] { return tcpStreams(this.frames()) }

  /** Whether some frame or reassembled TCP stream holds these bytes (e.g. a plaintext `GET /`). */
  includes (needle: string | Buffer): boolean {
    return this.frames().some((f) => f.includes(needle)) || this.streams().some((s) => s.data.includes(needle))
  }

  /** Every TLS ClientHello that opens a captured TCP stream, with its SNI and ALPN offers. */
  clientHellos (): ClientHello[] {
    return this.streams().flatMap((s) => {
      const hello = parseClientHello(s.data)
      return hello === undefined ? [] : [{ src: s.src, sport: s.sport, dst: s.dst, dport: s.dport, ...hello }]
    })
  }

  /** The capture as text: `tcpdump -r <file> -nn -A` (plus `extra` arguments, e.g. `-X`). */
  async text (extra: string[] = []): Promise<string> {
    return exec('tcpdump', ['-r', this.path, '-nn', '-A', ...extra, this.#filterOut])
  }
}

export interface Capture {
  /** Makes sure every packet that crossed the veth before the call is in, stops tcpdump, and returns what it saw. */
  stop (): Promise<Captured>
}

// ---------------------------------------------------------------------------------------------
// The fabric

export interface FabricOptions<P extends string> {
  /** Pod names (lower case, digits, dashes): addresses .2, .3, … in this order. */
  pods: readonly P[]
  /** Routed on each pod's eth0 (no gateway), so connections to them pass nat OUTPUT, then fail on-link. Default 10.96.0.0/16. */
  serviceCidrs?: string[]
  /** Also give the bridge and pods ULA addresses fd72:656d:<id>::/64 (no DAD wait). Default false. */
  ipv6?: boolean
}

const liveFabrics = new Set<Fabric<string>>()
let exitHookInstalled = false

function installExitHook (): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  const destroyAll = (): void => { for (const f of liveFabrics) f.destroySync() }
  // When the process exits without teardown having run (an uncaught error, process.exit): best effort, synchronously.
  process.on('exit', destroyAll)
  // A tap timeout: the runner sends this over IPC, then SIGALRM, then SIGKILL a second later; no 'exit' comes,
  // nor (in time) the teardown. Like tap, we leave the channel unreferenced so it does not keep the process up.
  if (process.send !== undefined) {
    process.on('message', (msg: { tapAbort?: unknown } | null) => { if (msg?.tapAbort === 'timeout') destroyAll() })
    process.channel?.unref()
  }
}

/**
 * A bridge in the root namespace with a /24 of its own (.1), and one network namespace per pod on it
 * (.2, .3, …), `lo` up, no default route: nothing leaves for the real network. Torn down (processes,
 * captures, relays, veths, namespaces, bridge) at the test's teardown, even when it fails.
 */
export class Fabric<P extends string = string> {
  readonly id: number
  readonly bridge: string
  /** The bridge's address in the root namespace: where `forward` relays listen. */
  readonly bridgeIp: string
  readonly bridgeIp6: string | undefined
  /** `a.b.c.0/24`. */
  readonly subnet: string
  readonly serviceCidrs: string[]
  readonly pods: Readonly<Record<P, Pod>>
  readonly #dir = mkdtempSync(join(tmpdir(), 'remora-netns-'))
  readonly #procs = new Set<PodProcess>()
  readonly #closers = new Set<() => Promise<void>>()
  #captures = 0
  #destroyed: Promise<void> | undefined

  private constructor (id: number, options: FabricOptions<P>) {
    this.id = id
    this.bridge = bridgeName(id)
    const base = subnetOf(id)
    this.subnet = `${base}.0/24`
    this.bridgeIp = `${base}.1`
    this.bridgeIp6 = options.ipv6 === true ? `${subnet6Of(id)}::1` : undefined
    this.serviceCidrs = options.serviceCidrs ?? ['10.96.0.0/16']
    const track = (p: PodProcess): void => {
      if (this.#destroyed !== undefined) { killGroup(p.pid, 'SIGKILL'); throw new Error(`fabric ${id} is torn down: cannot start ${p.what}`) }
      this.#procs.add(p)
      p.once('exit', () => this.#procs.delete(p))
    }
    const pods: Partial<Record<P, Pod>> = {}
    options.pods.forEach((name, i) => {
      const ip6 = options.ipv6 === true ? `${subnet6Of(id)}::${(i + 2).toString(16)}` : undefined
      pods[name] = new Pod(name, `remora-${id}-${name}`, `${base}.${i + 2}`, ip6, vethName(id, i), track)
    })
    this.pods = pods as Record<P, Pod>
  }

  /** Builds a fabric with these pods; teardown is registered on `t` before anything is created. */
  static async create<const P extends string> (t: Teardown, options: FabricOptions<P>): Promise<Fabric<P>> {
    if (options.pods.length === 0 || options.pods.length > 200) throw new Error('a fabric has 1 to 200 pods')
    for (const name of options.pods) if (!POD_RE.test(name)) throw new Error(`pod name ${JSON.stringify(name)}: lower-case letters, digits and dashes, starting with a letter`)
    if (new Set(options.pods).size !== options.pods.length) throw new Error('pod names must differ')
    installExitHook()
    const made: { fabric?: Fabric<P> } = {}
    // Registered first, so a failure halfway through still removes what was made.
    t.teardown(() => made.fabric?.destroy())
    const id = await withLock(async () => claimSlot(await cleanStale()))
    const fabric = made.fabric = new Fabric(id, options)
    liveFabrics.add(fabric)
    await fabric.#build(options.ipv6 === true)
    return fabric
  }

  async #build (ipv6: boolean): Promise<void> {
    const v6 = (addr: string | undefined): string[] => addr === undefined ? [] : [`addr add ${addr}/64 dev eth0 nodad`]
    await exec('ip', ['-batch', '-'], [
      `addr add ${this.bridgeIp}/24 dev ${this.bridge}`,
      ...(ipv6 ? [`addr add ${this.bridgeIp6}/64 dev ${this.bridge} nodad`] : []),
      `link set ${this.bridge} up`,
    ].join('\n') + '\n')
    await Promise.all(Object.values<Pod>(this.pods).map(async (pod) => {
      await exec('ip', ['netns', 'add', pod.ns])
      await exec('ip', ['link', 'add', pod.veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod.ns])
      await exec('ip', ['link', 'set', pod.veth, 'master', this.bridge, 'up'])
      await exec('ip', ['-n', pod.ns, '-batch', '-'], [
        'link set lo up',
        `addr add ${pod.ip}/24 dev eth0`,
        ...v6(pod.ip6),
        'link set eth0 up',
        ...this.serviceCidrs.map((cidr) => `route add ${cidr} dev eth0`),
      ].join('\n') + '\n')
    }))
  }

  /**
   * A TCP relay in the root namespace, listening on the bridge's address (on `port`, default one the kernel
   * picks), to `target` (a root-namespace service such as 127.0.0.1:6379): how pods reach it. Closed at teardown.
   */
  async forward (target: { host?: string, port: number }, options: { port?: number } = {}): Promise<Forward> {
    this.#assertUp('relay')
    const sockets = new Set<net.Socket>()
    const server = net.createServer((inbound) => {
      const outbound = net.connect(target.port, target.host ?? '127.0.0.1')
      for (const [a, b] of [[inbound, outbound], [outbound, inbound]]) {
        sockets.add(a)
        a.on('error', () => b.destroy())
        a.on('close', () => { sockets.delete(a); b.destroy() })
        a.pipe(b)
      }
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(options.port ?? 0, this.bridgeIp, () => { server.off('error', reject); resolve() })
    })
    const port = (server.address() as net.AddressInfo).port
    const close = async (): Promise<void> => {
      this.#closers.delete(close)
      const closed = new Promise((resolve) => server.close(resolve))
      for (const s of sockets) s.destroy()
      await closed
    }
    this.#closers.add(close)
    if (this.#destroyed !== undefined) { await close(); this.#assertUp('relay') }
    return { host: this.bridgeIp, port, address: `${this.bridgeIp}:${port}`, close }
  }

  /**
   * Starts tcpdump on `pod`'s veth (root side: everything the pod sends or receives) with a pcap `filter`
   * (default: everything) and resolves once tcpdump says it is listening. Killed at teardown if not stopped.
   */
  async capture (pod: Pod, filter = ''): Promise<Capture> {
    // The sync packet: a datagram from the bridge to the pod's discard port, which stop() waits to see.
    const sync = `udp and src host ${this.bridgeIp} and dst host ${pod.ip} and dst port ${SYNC_PORT}`
    const expression = filter.trim() === '' ? [] : [`(${filter}) or (${sync})`]
    this.#assertUp('capture')
    const child = spawn('tcpdump', ['-i', pod.veth, '-nn', '-U', '--immediate-mode', '-s', '0', '-w', '-', ...expression], { stdio: ['ignore', 'pipe', 'pipe'] })
    const chunks: Buffer[] = []
    let stderr = ''
    const seen = new Set<() => void>()
    child.stdout.on('data', (c: Buffer) => { chunks.push(c); for (const f of seen) f() })
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); for (const f of seen) f() })
    child.on('error', (err) => { stderr += `\n[spawn error: ${err.message}]`; for (const f of seen) f() })
    let closed = false
    child.on('close', () => { closed = true; for (const f of seen) f() })
    const kill = async (): Promise<void> => { await stopGroupless(child) }
    this.#closers.add(kill)
    const until = (what: string, done: () => boolean): Promise<void> => new Promise((resolve, reject) => {
      const check = (): void => {
        if (done()) finish()
        else if (closed) finish(new Error(`tcpdump on ${pod.veth} (pod ${pod.name}) exited before ${what}:\n${stderr}`))
      }
      const timer = setTimeout(() => finish(new Error(`tcpdump on ${pod.veth} (pod ${pod.name}): no ${what} within ${START_TIMEOUT_MS} ms:\n${stderr}`)), START_TIMEOUT_MS)
      function finish (err?: Error): void {
        clearTimeout(timer)
        seen.delete(check)
        if (err === undefined) resolve()
        else reject(err)
      }
      seen.add(check)
      check()
    })
    await until('"listening on"', () => stderr.includes('listening on'))
    const path = join(this.#dir, `${pod.name}-${++this.#captures}.pcap`)
    const stop = async (): Promise<Captured> => {
      // Packets reach tcpdump in the order they crossed the veth: once the sync packet is in, all before it are too.
      const token = Buffer.from(`${MARKER}${randomUUID()}`)
      const socket = dgram.createSocket('udp4')
      await new Promise<void>((resolve, reject) => { socket.once('error', reject); socket.bind(0, this.bridgeIp, () => { socket.off('error', reject); resolve() }) })
      socket.on('error', () => { /* an ICMP port unreachable from the pod is expected */ })
      let resend: NodeJS.Timeout | undefined
      const send = (delay: number): void => {
        socket.send(token, SYNC_PORT, pod.ip)
        resend = setTimeout(() => send(Math.min(delay * 2, 1_000)), delay)
      }
      let tail = Buffer.alloc(0)
      let found = false
      const scan = (c: Buffer): void => {
        const joined = Buffer.concat([tail, c])
        found ||= joined.includes(token)
        tail = joined.subarray(Math.max(0, joined.length - token.length))
        if (found) for (const f of seen) f()
      }
      child.stdout.on('data', scan)
      try {
        send(100)
        await until('sync packet', () => found)
      } finally {
        child.stdout.off('data', scan)
        clearTimeout(resend)
        socket.close()
      }
      await kill()
      this.#closers.delete(kill)
      const pcap = Buffer.concat(chunks)
      writeFileSync(path, pcap)
      return new Captured(path, pcap, `not (${sync}) and not (icmp and dst host ${this.bridgeIp} and icmp[icmptype] == icmp-unreach)`)
    }
    return { stop }
  }

  #assertUp (what: string): void {
    if (this.#destroyed !== undefined) throw new Error(`fabric ${this.id} is torn down: cannot start a ${what}`)
  }

  /** Tears everything down (what teardown calls); idempotent. */
  destroy (): Promise<void> {
    this.#destroyed ??= this.#teardown()
    return this.#destroyed
  }

  async #teardown (): Promise<void> {
    await Promise.all([...this.#closers].map((close) => close()))
    await Promise.all([...this.#procs].map((p) => p.stop()))
    const pods = Object.values<Pod>(this.pods)
    await Promise.all(pods.map((p) => killNamespace(p.ns)))
    // The veth first: deleting a namespace frees it (and its veth) only once its last process is gone.
    await Promise.all(pods.map((p) => ipGone(['link', 'del', p.veth])))
    await Promise.all(pods.map((p) => ipGone(['netns', 'del', p.ns])))
    await ipGone(['link', 'del', this.bridge])
    rmSync(this.#dir, { recursive: true, force: true })
    liveFabrics.delete(this as Fabric<string>)
  }

  /** The exit hook's teardown: synchronous, best effort. */
  destroySync (): void {
    for (const p of this.#procs) killGroup(p.pid, 'SIGKILL')
    for (const p of Object.values<Pod>(this.pods)) {
      killNamespaceSync(p.ns)
      ipGoneSync(['link', 'del', p.veth])
      ipGoneSync(['netns', 'del', p.ns])
    }
    ipGoneSync(['link', 'del', this.bridge])
    rmSync(this.#dir, { recursive: true, force: true })
    liveFabrics.delete(this as Fabric<string>)
  }
}

async function stopGroupless (child: ChildProcess): Promise<void> {
  if (child.pid === undefined || hasExited(child)) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  let timer: NodeJS.Timeout | undefined
  await Promise.race([exited, new Promise((resolve) => { timer = setTimeout(resolve, STOP_GRACE_MS) })])
  clearTimeout(timer)
  if (!hasExited(child)) child.kill('SIGKILL')
  await exited
}

// ---------------------------------------------------------------------------------------------
// Reading captures

/** The frames of a pcap file (classic format, either byte order, µs or ns timestamps). */
function pcapFrames (pcap: Buffer): Buffer[] {
  if (pcap.length < 24) return []
  const magic = pcap.readUInt32LE(0)
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d
  if (!le && pcap.readUInt32BE(0) !== 0xa1b2c3d4 && pcap.readUInt32BE(0) !== 0xa1b23c4d) throw new Error('not a pcap file')
  const u32 = (at: number): number => le ? pcap.readUInt32LE(at) : pcap.readUInt32BE(at)
  const frames: Buffer[] = []
  for (let at = 24; at + 16 <= pcap.length;) {
    const len = u32(at + 8)
    if (at + 16 + len > pcap.length) break
    frames.push(pcap.subarray(at + 16, at + 16 + len))
    at += 16 + len
  }
  return frames
}

function ipv6String (b: Buffer): string {
  const groups = Array.from({ length: 8 }, (_, i) => b.readUInt16BE(i * 2).toString(16))
  let best = [-1, 0]
  for (let i = 0; i < 8;) {
    let j = i
    while (j < 8 && groups[j] === '0') j++
    if (j - i > best[1] && j - i > 1) best = [i, j - i]
    i = j === i ? i + 1 : j
  }
  if (best[0] < 0) return groups.join(':')
  return `${groups.slice(0, best[0]).join(':')}::${groups.slice(best[0] + best[1]).join(':')}`
}

interface Segment { src: string, dst: string, sport: number, dport: number, seq: number, syn: boolean, payload: Buffer }

/** An Ethernet frame's TCP segment (IPv4 or IPv6 without extension headers), if it carries one. */
function tcpSegment (frame: Buffer): Segment | undefined {
  try {
    let at = 14
    let type = frame.readUInt16BE(12)
    if (type === 0x8100) { type = frame.readUInt16BE(16); at = 18 }
    let proto: number
    let src: string
    let dst: string
    let end: number
    if (type === 0x0800) {
      proto = frame[at + 9]
      src = [...frame.subarray(at + 12, at + 16)].join('.')
      dst = [...frame.subarray(at + 16, at + 20)].join('.')
      end = at + frame.readUInt16BE(at + 2)
      at += (frame[at] & 0x0f) * 4
    } else if (type === 0x86dd) {
      proto = frame[at + 6]
      src = ipv6String(frame.subarray(at + 8, at + 24))
      dst = ipv6String(frame.subarray(at + 24, at + 40))
      end = at + 40 + frame.readUInt16BE(at + 4)
      at += 40
    } else {
      return undefined
    }
    if (proto !== 6) return undefined
    return {
      src, dst,
      sport: frame.readUInt16BE(at),
      dport: frame.readUInt16BE(at + 2),
      seq: frame.readUInt32BE(at + 4),
      syn: (frame[at + 13] & 0x02) !== 0,
      payload: frame.subarray(at + (frame[at + 12] >> 4) * 4, Math.min(end, frame.length)),
    }
  } catch {
    return undefined
  }
}

/** Each direction's payload in sequence order; retransmitted bytes once. A gap (a lost segment) is skipped over. */
function tcpStreams (frames: Buffer[]): TcpStream[] {
  const flows = new Map<string, { first: Segment, isn: number | undefined, segments: Segment[] }>()
  for (const frame of frames) {
    const s = tcpSegment(frame)
    if (s === undefined) continue
    const key = `${s.src}:${s.sport} > ${s.dst}:${s.dport}`
    let flow = flows.get(key)
    if (flow === undefined) flows.set(key, flow = { first: s, isn: undefined, segments: [] })
    if (s.syn) flow.isn = (s.seq + 1) >>> 0
    if (s.payload.length > 0) flow.segments.push(s)
  }
  return [...flows.values()].filter((f) => f.segments.length > 0).map(({ first, isn, segments }) => {
    const base = isn ?? segments[0].seq
    const placed = segments.map((s) => ({ at: (s.seq - base) | 0, payload: s.payload })).sort((a, b) => a.at - b.at)
    const parts: Buffer[] = []
    let cursor = Math.min(0, placed[0].at)
    for (const { at, payload } of placed) {
      const skip = Math.max(0, cursor - at)
      if (skip < payload.length) parts.push(payload.subarray(skip))
      cursor = Math.max(cursor, at + payload.length)
    }
    return { src: first.src, sport: first.sport, dst: first.dst, dport: first.dport, data: Buffer.concat(parts) }
  })
}

/** SNI and ALPN of a TLS ClientHello at the start of `data` (handshake records concatenated), if it opens with one. */
function parseClientHello (data: Buffer): { sni: string | undefined, alpn: string[] } | undefined {
  if (data.length < 9 || data[0] !== 0x16 || data[1] !== 0x03) return undefined
  const records: Buffer[] = []
  for (let at = 0; at + 5 <= data.length && data[at] === 0x16;) {
    const len = data.readUInt16BE(at + 3)
    records.push(data.subarray(at + 5, at + 5 + len))
    at += 5 + len
  }
  const hs = Buffer.concat(records)
  if (hs[0] !== 0x01) return undefined
  try {
    const end = Math.min(hs.length, 4 + hs.readUIntBE(1, 3))
    let at = 4 + 2 + 32
    at += 1 + hs[at]
    at += 2 + hs.readUInt16BE(at)
    at += 1 + hs[at]
    let sni: string | undefined
    const alpn: string[] = []
    if (at + 2 > end) return { sni, alpn }
    const extEnd = Math.min(end, at + 2 + hs.readUInt16BE(at))
    at += 2
    while (at + 4 <= extEnd) {
      const type = hs.readUInt16BE(at)
      const len = hs.readUInt16BE(at + 2)
      const ext = hs.subarray(at + 4, at + 4 + len)
      if (type === 0 && ext.length >= 5 && ext[2] === 0) sni = ext.subarray(5, 5 + ext.readUInt16BE(3)).toString('latin1')
      if (type === 16 && ext.length >= 2) {
        for (let p = 2; p < Math.min(ext.length, 2 + ext.readUInt16BE(0));) {
          alpn.push(ext.subarray(p + 1, p + 1 + ext[p]).toString('latin1'))
          p += 1 + ext[p]
        }
      }
      at += 4 + len
    }
    return { sni, alpn }
  } catch {
    return undefined
  }
}
