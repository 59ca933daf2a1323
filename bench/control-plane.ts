// `npm run bench:control`: the real `remora control` against a fake Kubernetes API, watched by simulated sidecars (HTTP/2): fan-out latency, CPU, RSS.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http2, { type ClientHttp2Session } from 'node:http2'
import os from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { WATCH_PATH, decode } from '../src/discovery/wire.ts'
import { compile } from './build.ts'
import { eachFlag, parseDuration } from './flags.ts'
import { freePort, installCleanup, startChild, stopChild, waitForReady, which, type Child } from './procs.ts'
import { ForeignLoad, Sampler, waitForQuiet, type ProcUsage } from './sample.ts'
import { summarize } from './prof-top.ts'
import { percentile } from './stats.ts'
import type { FakeKubeApi, KubeObject } from '../test/harness/kube-api.ts'

const ROOT = new URL('..', import.meta.url).pathname
const SELF = new URL(import.meta.url).pathname
const INBOUND_PORT = 15006
const TARGET_PORT = 8080

// ---------------------------------------------------------------------------------------------
// Shared: the clock. process.hrtime is CLOCK_MONOTONIC, the same clock in every process on the
// machine, so an apply time taken here and an arrival time taken in a worker compare directly.

let base = 0n
/** The bench's temp dir, removed on every way out unless --keep-tmp. */
let tmpToRemove: string | undefined
const now = (): number => Number(process.hrtime.bigint() - base) / 1e6

/** One endpoint key that appeared (op 1) in, or left (op 0), one sidecar's view of one authority, and when (ms). */
type Arrival = [sidecar: number, authority: string, key: string, op: 0 | 1, t: number]

interface SidecarSpec { id: number, authorities: string[] }

type ToWorker =
  | { id: number, cmd: 'init', base: string, addr: string, sidecars: SidecarSpec[], concurrency: number, timeoutMs: number }
  | { id: number, cmd: 'collect' }
  | { id: number, cmd: 'stats' }
  | { id: number, cmd: 'verify', expected: Record<string, string[]> }
  | { id: number, cmd: 'close' }

interface WorkerCounts {
  snapshot: number
  delta: number
  absent: number
  /** A snapshot on a watch that already had one: only after a reset or a non-endpoint change (neither happens here). */
  resnapshot: number
  /** A delta whose `previous` is not the version the watch holds. */
  gaps: number
  badMessages: number
  badStatus: number
  streamErrors: number
  /** Watches that ended while the bench still wanted them (not by close). */
  streamEnds: number
  sessionErrors: number
  bytes: number
}

interface WorkerStats {
  counts: WorkerCounts
  /** Event-loop delay of the worker since the last stats call, ms. */
  loopDelayP99Ms: number
  loopDelayMaxMs: number
  lastError?: string
}

interface Mismatch { sidecar: number, authority: string, expected: number, got: number, missing: string[], extra: string[] }

// ---------------------------------------------------------------------------------------------
// Worker: a share of the simulated sidecars, one HTTP/2 session each, one stream per watch.

class SimWatch {
  readonly sidecar: number
  readonly authority: string
  version = -1
  keys = new Set<string>()
  answered = false
  buffered = ''

  constructor (sidecar: number, authority: string) {
    this.sidecar = sidecar
    this.authority = authority
  }
}

async function workerMain (): Promise<void> {
  const counts: WorkerCounts = { snapshot: 0, delta: 0, absent: 0, resnapshot: 0, gaps: 0, badMessages: 0, badStatus: 0, streamErrors: 0, streamEnds: 0, sessionErrors: 0, bytes: 0 }
  let arrivals: Arrival[] = []
  const watches: SimWatch[] = []
  const sessions: ClientHttp2Session[] = []
  let closing = false
  let lastError: string | undefined
  const eld = monitorEventLoopDelay({ resolution: 5 })
  eld.enable()

  const handle = (w: SimWatch, line: string, t: number): void => {
    let m
    try { m = decode(line) } catch (err) { counts.badMessages++; lastError = (err as Error).message; return }
    if (m.type === 'snapshot') {
      if (w.answered) counts.resnapshot++
      counts.snapshot++
      w.version = m.version
      w.keys = new Set(m.service.endpoints.map((e) => e.key))
    } else if (m.type === 'delta') {
      counts.delta++
      if (m.previous !== w.version) { counts.gaps++; lastError = `${w.authority}: delta previous ${m.previous}, holding ${w.version}` }
      w.version = m.version
      for (const k of m.remove) if (w.keys.delete(k)) arrivals.push([w.sidecar, w.authority, k, 0, t])
      for (const e of m.add) if (!w.keys.has(e.key)) { w.keys.add(e.key); arrivals.push([w.sidecar, w.authority, e.key, 1, t]) }
    } else {
      counts.absent++
      w.version = m.version
      w.keys = new Set()
    }
    w.answered = true
  }

  const connect = (spec: SidecarSpec, addr: string, timeoutMs: number): Promise<void> => new Promise((resolve) => {
    const session = http2.connect(`http://${addr}`)
    sessions.push(session)
    session.on('error', (err) => { counts.sessionErrors++; lastError = err.message })
    let pending = spec.authorities.length
    const timer = setTimeout(() => { lastError = `sidecar ${spec.id}: ${pending} watches unanswered after ${timeoutMs} ms`; resolve() }, timeoutMs)
    const answered = (): void => { if (--pending === 0) { clearTimeout(timer); resolve() } }
    for (const authority of spec.authorities) {
      const w = new SimWatch(spec.id, authority)
      watches.push(w)
      const req = session.request({ ':path': `${WATCH_PATH}?authority=${encodeURIComponent(authority)}`, 'remora-workload': `sim-${spec.id}` }, { endStream: true })
      req.setEncoding('utf8')
      req.on('response', (h) => { if (h[':status'] !== 200) { counts.badStatus++; lastError = `${authority}: HTTP ${String(h[':status'])}` } })
      req.on('data', (chunk: string) => {
        const t = now()
        counts.bytes += chunk.length
        const was = w.answered
        let text = w.buffered + chunk
        let nl: number
        while ((nl = text.indexOf('\n')) >= 0) {
          handle(w, text.slice(0, nl), t)
          text = text.slice(nl + 1)
        }
        w.buffered = text
        if (!was && w.answered) answered()
      })
      req.on('error', (err) => { if (!closing) { counts.streamErrors++; lastError = `${authority}: ${err.message}` } })
      req.on('close', () => { if (!closing) counts.streamEnds++ })
    }
  })

  const reply = (msg: object): void => { process.send?.(msg) }
  process.on('disconnect', () => process.exit(0))
  process.on('message', (raw) => {
    const m = raw as ToWorker
    switch (m.cmd) {
      case 'init': {
        base = BigInt(m.base)
        const started = now()
        const queue = [...m.sidecars]
        const lane = async (): Promise<void> => {
          for (let s = queue.shift(); s !== undefined; s = queue.shift()) await connect(s, m.addr, m.timeoutMs)
        }
        void Promise.all(Array.from({ length: Math.max(1, m.concurrency) }, lane)).then(() => {
          reply({ id: m.id, ms: now() - started, done: now(), watches: watches.length, answered: watches.filter((w) => w.answered).length })
        })
        break
      }
      case 'collect':
        reply({ id: m.id, arrivals })
        arrivals = []
        break
      case 'stats': {
        const stats: WorkerStats = { counts: { ...counts }, loopDelayP99Ms: eld.percentile(99) / 1e6, loopDelayMaxMs: eld.max / 1e6, lastError }
        eld.reset()
        reply({ id: m.id, stats })
        break
      }
      case 'verify': {
        const mismatches: Mismatch[] = []
        for (const w of watches) {
          const want = m.expected[w.authority] ?? []
          const missing = want.filter((k) => !w.keys.has(k))
          const wanted = new Set(want)
          const extra = [...w.keys].filter((k) => !wanted.has(k))
          if (missing.length > 0 || extra.length > 0) mismatches.push({ sidecar: w.sidecar, authority: w.authority, expected: want.length, got: w.keys.size, missing: missing.slice(0, 3), extra: extra.slice(0, 3) })
        }
        reply({ id: m.id, mismatches, watches: watches.length })
        break
      }
      case 'close':
        closing = true
        for (const s of sessions) s.destroy()
        reply({ id: m.id })
        break
    }
  })
  process.send?.({ id: 0, ready: true })
}

// ---------------------------------------------------------------------------------------------
// Main: the fake cluster, the control plane, the workers, the changes and the report.

interface Options {
  sidecars: number
  services: number
  endpoints: number
  watches: number
  namespaces: number
  durationS: number
  rate: number
  burst: number
  workers: number
  concurrency: number
  seed: number
  pin: boolean
  js: boolean
  cpuProf: boolean
  keepTmp: boolean
  waitQuiet: boolean
  quietWaitS: number
  nodeOptions: string[]
}

function usage (): string {
  return `usage: npm run bench:control -- [options]     (or: npx node bench/control-plane.ts [options])

Starts a fake Kubernetes API in this process with --services Services (one EndpointSlice of
--endpoints ready endpoints each, and their Pods), runs the real \`remora control\` on it as a child
process, and connects --sidecars simulated sidecars to it (real HTTP/2 clients, in --workers child
processes). Each sidecar watches --watches services: one "hot" service every sidecar watches, the
rest at random. Then it changes EndpointSlices through the fake API and times every delta from the
change to each watching sidecar: a steady phase (--rate changes/s on random services plus one hot
change a second, for --duration), then a burst (--burst changes at once, the hot service among them).
Finally every watch's endpoints are checked against the cluster. Prints a table; JSON goes to
bench/results/control-<timestamp>.json. Full size takes about a minute.

options:
  --sidecars 1000     simulated sidecars (one HTTP/2 connection each)
  --services 1000     Kubernetes Services in the cluster
  --endpoints 10      endpoints (pods) per Service
  --watches 10        watches per sidecar (1 hot + the rest random)
  --namespaces 10     namespaces the Services are spread over
  --duration 10s      steady phase
  --rate 20           steady changes per second on random services (plus 1/s on the hot one)
  --burst 200         changes applied at once in the burst phase
  --workers 2         child processes the sidecars are spread over
  --concurrency 25    sidecars connecting at once, per worker
  --seed 1            random choices (watches, changes) are repeatable
  --no-pin            don't pin: by default the control plane gets CPU 1 and everything else CPU 0
  --js                run the control plane compiled to JavaScript (tsconfig.build.json), as the image does
  --cpu-prof          profile the control plane (node --cpu-prof); prints its hot spots, keeps the profile
  --node-options "…"  extra node flags for the control plane, e.g. "--max-semi-space-size=16"
  --keep-tmp          keep the temp dir (kubeconfig, control plane log)
  --no-wait-quiet     don't wait for other processes on the machine to calm down before the idle, steady and burst phases
  --quiet-wait 60s    how long to wait at most for that (other processes under 20 % of a core); the CPU they
                      used anyway is reported per phase ("other")
`
}

function parseArgs (argv: string[]): Options {
  const o: Options = {
    sidecars: 1000, services: 1000, endpoints: 10, watches: 10, namespaces: 10, durationS: 10, rate: 20, burst: 200,
    workers: 2, concurrency: 25, seed: 1, pin: true, js: false, cpuProf: false, keepTmp: false, waitQuiet: true, quietWaitS: 60, nodeOptions: [],
  }
  const int = (flag: string, v: string, min: number): number => {
    const n = Number(v)
    if (!Number.isInteger(n) || n < min) throw new Error(`${flag} expects an integer ≥ ${min}, got "${v}"`)
    return n
  }
  eachFlag(argv, (flag, value) => {
    switch (flag) {
      case '--sidecars': o.sidecars = int(flag, value(), 1); break
      case '--services': o.services = int(flag, value(), 2); break
      case '--endpoints': o.endpoints = int(flag, value(), 2); break
      case '--watches': o.watches = int(flag, value(), 1); break
      case '--namespaces': o.namespaces = int(flag, value(), 1); break
      case '--duration': o.durationS = Math.max(1, Math.round(parseDuration(value()))); break
      case '--rate': o.rate = int(flag, value(), 0); break
      case '--burst': o.burst = int(flag, value(), 0); break
      case '--workers': o.workers = int(flag, value(), 1); break
      case '--concurrency': o.concurrency = int(flag, value(), 1); break
      case '--seed': o.seed = int(flag, value(), 0); break
      case '--no-pin': o.pin = false; break
      case '--js': o.js = true; break
      case '--cpu-prof': o.cpuProf = true; break
      case '--keep-tmp': o.keepTmp = true; break
      case '--no-wait-quiet': o.waitQuiet = false; break
      case '--quiet-wait': o.quietWaitS = parseDuration(value()); break
      case '--node-options': o.nodeOptions = value().split(/\s+/).filter((f) => f !== ''); break
      case '--help': case '-h': process.stdout.write(usage()); process.exit(0); break
      default: return false
    }
    return true
  })
  if (o.watches > o.services) throw new Error(`--watches ${o.watches} is more than --services ${o.services}`)
  o.burst = Math.min(o.burst, o.services)
  return o
}

/** mulberry32: small, seedable, good enough to pick services. */
function rng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

// ---- the fake cluster

interface SvcModel {
  readonly index: number
  readonly name: string
  readonly namespace: string
  readonly authority: string
  readonly ready: boolean[]
  readonly ips: string[]
  /** Flips applied so far per endpoint, to alternate add/remove. */
  lastChange: number
}

const ipOf = (n: number): string => `10.${100 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`
const keyOf = (ip: string): string => `${ip}:${INBOUND_PORT}/${TARGET_PORT}`

function buildCluster (api: FakeKubeApi, o: Options, kube: KubeHarness): SvcModel[] {
  const services: SvcModel[] = []
  for (let i = 0; i < o.services; i++) {
    const namespace = `ns-${i % o.namespaces}`
    const name = i === 0 ? 'hot' : `svc-${i}`
    const ips = Array.from({ length: o.endpoints }, (_, e) => ipOf(i * o.endpoints + e))
    const svc: SvcModel = { index: i, name, namespace, authority: `${name}.${namespace}:80`, ready: ips.map(() => true), ips, lastChange: -Infinity }
    services.push(svc)
    ips.forEach((ip, e) => api.apply(kube.pod(namespace, `${name}-${e}`, { serviceAccountName: `${name}-sa`, ip, labels: { app: name } })))
    api.apply(kube.service(namespace, name, { ports: [{ name: 'http', port: 80, targetPort: TARGET_PORT }] }))
    api.apply(sliceOf(svc, kube))
  }
  return services
}

function sliceOf (s: SvcModel, kube: KubeHarness): KubeObject {
  return kube.endpointSlice(s.namespace, `${s.name}-abcde`, s.name, {
    ports: [{ name: 'http', port: TARGET_PORT }],
    endpoints: s.ips.map((ip, e) => ({
      addresses: [ip],
      conditions: { ready: s.ready[e], serving: s.ready[e], terminating: false },
      targetRef: { kind: 'Pod', name: `${s.name}-${e}`, namespace: s.namespace },
      nodeName: `node-${e % 3}`,
    })),
  })
}

const expectedKeys = (s: SvcModel): string[] => s.ips.filter((_, e) => s.ready[e]).map(keyOf).sort()

// Loaded only in the main process: the workers need neither the fake API nor the Kubernetes client.
type KubeHarness = typeof import('../test/harness/kube-api.ts')

// ---- changes and their deliveries

type PhaseName = 'steady' | 'hot' | 'burst'

interface Change {
  phase: PhaseName
  svc: SvcModel
  key: string
  op: 0 | 1
  /** How many earlier changes of the same service, key and op: the n-th arrival per watcher is this one's. */
  n: number
  t: number
}

class Ledger {
  readonly changes: Change[] = []
  readonly #occurrences = new Map<string, number>()
  /** Arrival times per sidecar, authority, key and op, in order. */
  readonly #arrivals = new Map<string, number[]>()
  readonly #watchers: Map<string, number[]>

  constructor (watchers: Map<string, number[]>) {
    this.#watchers = watchers
  }

  /** Flips one endpoint of `svc` (ready ⇄ not ready) in the fake API; returns the change. */
  flip (api: FakeKubeApi, kube: KubeHarness, svc: SvcModel, phase: PhaseName, pick: () => number): Change {
    const readyCount = svc.ready.filter(Boolean).length
    // Keep at least half the endpoints ready: never an empty list (which falls back to draining endpoints).
    const candidates = svc.ready.map((r, e) => ({ r, e })).filter(({ r }) => r ? readyCount > Math.ceil(svc.ips.length / 2) : true)
    const { e } = candidates[Math.floor(pick() * candidates.length)]
    svc.ready[e] = !svc.ready[e]
    const op: 0 | 1 = svc.ready[e] ? 1 : 0
    const key = keyOf(svc.ips[e])
    const id = `${svc.authority}\t${key}\t${op}`
    const n = this.#occurrences.get(id) ?? 0
    this.#occurrences.set(id, n + 1)
    const slice = sliceOf(svc, kube)
    const t = now()
    api.apply(slice)
    svc.lastChange = t
    const c: Change = { phase, svc, key, op, n, t }
    this.changes.push(c)
    return c
  }

  add (arrivals: Arrival[]): void {
    for (const [sid, authority, key, op, t] of arrivals) {
      const id = `${sid}\t${authority}\t${key}\t${op}`
      const list = this.#arrivals.get(id)
      if (list === undefined) this.#arrivals.set(id, [t])
      else list.push(t)
    }
  }

  /** Per delivery latencies (ms) of these changes, the per-change time until its last watcher had it, and what is still missing. */
  latencies (changes: Change[]): { each: number[], last: number[], missing: number, expected: number, lastArrival: number } {
    const each: number[] = []
    const last: number[] = []
    let missing = 0
    let expected = 0
    let lastArrival = 0
    for (const c of changes) {
      let worst = 0
      let complete = true
      for (const sid of this.#watchers.get(c.svc.authority) ?? []) {
        expected++
        const t = this.#arrivals.get(`${sid}\t${c.svc.authority}\t${c.key}\t${c.op}`)?.[c.n]
        if (t === undefined) { missing++; complete = false; continue }
        each.push(t - c.t)
        lastArrival = Math.max(lastArrival, t)
        worst = Math.max(worst, t - c.t)
      }
      if (complete) last.push(worst)
    }
    return { each, last, missing, expected, lastArrival }
  }
}

// ---- workers

class Worker {
  readonly index: number
  readonly proc: ChildProcess
  readonly ready: Promise<void>
  #seq = 0
  readonly #pending = new Map<number, (m: Record<string, unknown>) => void>()

  constructor (index: number, cpus: string | undefined) {
    this.index = index
    const pin = cpus !== undefined ? which('taskset') : undefined
    const [cmd, args] = pin !== undefined ? [pin, ['-c', cpus as string, process.execPath, SELF, '--worker']] : [process.execPath, [SELF, '--worker']]
    this.proc = spawn(cmd, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' })
    this.ready = new Promise((resolve, reject) => {
      this.#pending.set(0, () => resolve())
      this.proc.once('exit', (code) => reject(new Error(`simulation worker ${index} exited with ${code}`)))
    })
    this.proc.on('message', (raw) => {
      const m = raw as Record<string, unknown> & { id: number }
      const done = this.#pending.get(m.id)
      this.#pending.delete(m.id)
      done?.(m)
    })
  }

  get pid (): number { return this.proc.pid as number }

  call<T> (msg: Record<string, unknown>): Promise<T> {
    const id = ++this.#seq
    return new Promise((resolve, reject) => {
      this.#pending.set(id, (m) => resolve(m as T))
      this.proc.send({ ...msg, id }, (err) => { if (err !== null) reject(err) })
    })
  }
}

// ---- the control plane's /metrics

type Scrape = Map<string, number>

async function scrape (adminPort: number): Promise<Scrape> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text()
  const out: Scrape = new Map()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    out.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return out
}

interface PushSummary {
  /** Catalog changes pushed in the window. */
  count: number
  meanMs: number
  /** Upper bound of the bucket holding the p50 / p99 (the histogram's resolution). */
  p50LeMs: number | null
  p99LeMs: number | null
  maxLeMs: number | null
  messages: Record<string, number>
  gcMs: number
  loopLagP99Ms: number
  loopLagMaxMs: number
  heapUsedMb: number
  slowWatchResets: number
}

function pushSummary (before: Scrape, after: Scrape): PushSummary {
  const name = 'remora_control_push_duration_seconds'
  const d = (k: string): number => (after.get(k) ?? 0) - (before.get(k) ?? 0)
  const buckets: Array<{ le: number, n: number }> = []
  for (const k of after.keys()) {
    const m = new RegExp(`^${name}_bucket\\{le="([^"]+)"\\}$`).exec(k)
    if (m !== null) buckets.push({ le: m[1] === '+Inf' ? Infinity : Number(m[1]), n: d(k) })
  }
  buckets.sort((a, b) => a.le - b.le)
  const count = d(`${name}_count`)
  const le = (q: number): number | null => {
    if (count === 0) return null
    const b = buckets.find((x) => x.n >= q * count)
    return b === undefined ? null : b.le * 1000
  }
  const messages: Record<string, number> = {}
  for (const k of after.keys()) {
    const m = /^remora_control_pushes_total\{type="([^"]+)"\}$/.exec(k)
    if (m !== null) messages[m[1]] = d(k)
  }
  let gc = 0
  for (const k of after.keys()) if (k.startsWith('nodejs_gc_duration_seconds_sum')) gc += d(k)
  return {
    count,
    meanMs: count === 0 ? 0 : d(`${name}_sum`) / count * 1000,
    p50LeMs: le(0.5),
    p99LeMs: le(0.99),
    maxLeMs: le(1),
    messages,
    gcMs: gc * 1000,
    loopLagP99Ms: (after.get('nodejs_eventloop_lag_p99_seconds') ?? 0) * 1000,
    loopLagMaxMs: (after.get('nodejs_eventloop_lag_max_seconds') ?? 0) * 1000,
    heapUsedMb: (after.get('nodejs_heap_size_used_bytes') ?? 0) / 2 ** 20,
    slowWatchResets: d('remora_control_slow_watch_resets_total'),
  }
}

// ---- statistics

interface Dist { n: number, p50: number, p90: number, p99: number, max: number }

function dist (values: number[]): Dist | null {
  if (values.length === 0) return null
  const v = Float64Array.from(values).sort()
  const r = (x: number): number => Math.round(x * 10) / 10
  return { n: v.length, p50: r(percentile(v, 50)), p90: r(percentile(v, 90)), p99: r(percentile(v, 99)), max: r(v[v.length - 1]) }
}

// ---- phases

interface PhaseUsage {
  seconds: number
  /** Start and end, ms on the bench clock (hrtime since the bench began). */
  window: [number, number]
  control: ProcUsage
  /** CPU seconds the control plane used in the window. */
  controlCpuS: number
  sim: ProcUsage[]
  benchCpuPct: number
  otherLoadPct: number
  push: PushSummary
  simLoopDelayMaxMs: number
}

async function main (): Promise<void> {
  const o = parseArgs(process.argv.slice(2))
  base = process.hrtime.bigint()
  const log = (line: string): void => { process.stderr.write(`${line}\n`) }
  const workers: Worker[] = []
  installCleanup(() => {
    for (const w of workers) w.proc.kill('SIGKILL')
    if (tmpToRemove !== undefined) rmSync(tmpToRemove, { recursive: true, force: true })
  })
  process.on('exit', () => { for (const w of workers) w.proc.kill('SIGKILL') })

  const cpus = os.availableParallelism()
  const pin = o.pin && cpus >= 2 && which('taskset') !== undefined
  const controlCpus = pin ? '1' : undefined
  const simCpus = pin ? '0' : undefined
  if (pin) {
    // The bench itself (the fake API) and its workers share CPU 0; the control plane gets CPU 1, which
    // keeps the simulation off it (other processes on the machine are not kept off: see "other").
    try { execFileSync('taskset', ['-a', '-p', '-c', '0', String(process.pid)], { stdio: 'ignore' }) } catch { /* not pinned */ }
  }
  const layout = pin ? 'control plane pinned to CPU 1; fake Kubernetes API (bench process) and simulation workers on CPU 0' : 'not pinned'
  log(`remora control-plane bench — node ${process.version}, ${cpus} CPUs (${os.cpus()[0]?.model ?? '?'})`)
  log(`${o.sidecars} sidecars × ${o.watches} watches (1 hot + ${o.watches - 1} random), ${o.services} services × ${o.endpoints} endpoints in ${o.namespaces} namespaces`)
  log(`simulation: ${o.workers} worker processes, ${o.concurrency} sidecars connecting at once per worker; ${layout}`)

  const tmp = mkdtempSync(join(os.tmpdir(), 'remora-bench-control-'))
  if (!o.keepTmp) tmpToRemove = tmp
  const resultsDir = join(ROOT, 'bench/results')
  mkdirSync(resultsDir, { recursive: true })
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').replace(/-\d+Z$/, 'Z')
  const profDir = join(resultsDir, `prof-control-${stamp}`)

  let cli = join(ROOT, 'src/cli.ts')
  if (o.js) {
    log('compiling remora to JavaScript (tsconfig.build.json)…')
    cli = compile(ROOT, tmp, log)
  }

  // The cluster.
  const kube = await import('../test/harness/kube-api.ts')
  const api = await kube.FakeKubeApi.start()
  let t0 = now()
  const services = buildCluster(api, o, kube)
  log(`fake Kubernetes API: ${o.services} Services, ${o.services} EndpointSlices, ${o.services * o.endpoints} Pods (${Math.round(now() - t0)} ms)`)
  const kubeconfig = join(tmp, 'kubeconfig.yaml')
  writeFileSync(kubeconfig, api.kubeConfig().exportConfig())

  // Who watches what: sidecar i watches the hot service and watches-1 others at random.
  const pick = rng(o.seed)
  const specs: SidecarSpec[] = []
  const watchersOf = new Map<string, number[]>()
  for (let id = 0; id < o.sidecars; id++) {
    const chosen = new Set<number>([0])
    while (chosen.size < o.watches) chosen.add(1 + Math.floor(pick() * (o.services - 1)))
    const authorities = [...chosen].map((i) => services[i].authority)
    specs.push({ id, authorities })
    for (const a of authorities) {
      const list = watchersOf.get(a)
      if (list === undefined) watchersOf.set(a, [id])
      else list.push(id)
    }
  }

  // The control plane.
  const discoveryPort = await freePort()
  const adminPort = await freePort()
  if (o.cpuProf) mkdirSync(profDir, { recursive: true })
  const nodeArgs = [...o.nodeOptions, ...(o.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`, '--cpu-prof-name=control.cpuprofile'] : [])]
  t0 = now()
  const control: Child = startChild('remora control', process.execPath, [...nodeArgs, cli, 'control', '--discovery-addr', `127.0.0.1:${discoveryPort}`, '--admin-addr', `127.0.0.1:${adminPort}`], {
    // The simulated sidecars speak plaintext h2c: no CA, whatever the environment says.
    env: { ...process.env, KUBECONFIG: kubeconfig, REMORA_SOURCE: 'kubernetes', REMORA_LOG_LEVEL: 'warn', REMORA_CA: 'off' },
    cpus: controlCpus,
    logFile: join(tmp, 'control.log'),
  })
  await waitForReady(control, adminPort, 120_000)
  const readyMs = now() - t0
  log(`control plane ready in ${Math.round(readyMs)} ms (pid ${control.pid}, discovery 127.0.0.1:${discoveryPort}, admin http://127.0.0.1:${adminPort}${o.js ? ', compiled JavaScript' : ', type stripping'})`)

  for (let i = 0; i < o.workers; i++) workers.push(new Worker(i, simCpus))
  await Promise.all(workers.map((w) => w.ready))

  let scraped = await scrape(adminPort)
  const measure = async <T>(run: () => Promise<T>): Promise<{ result: T, usage: PhaseUsage }> => {
    const sampler = new Sampler([{ label: 'control', pid: control.pid }, ...workers.map((w) => ({ label: `sim-${w.index}`, pid: w.pid }))])
    const foreign = new ForeignLoad()
    await Promise.all(workers.map((w) => w.call({ cmd: 'stats' })))
    const cpu0 = process.cpuUsage()
    const start = now()
    foreign.start()
    sampler.start()
    const result = await run()
    const [controlUsage, ...sim] = sampler.stop()
    const otherLoadPct = foreign.stop()
    const seconds = (now() - start) / 1000
    const cpu = process.cpuUsage(cpu0)
    const after = await scrape(adminPort)
    const push = pushSummary(scraped, after)
    scraped = after
    const stats = await Promise.all(workers.map((w) => w.call<{ stats: WorkerStats }>({ cmd: 'stats' })))
    return {
      result,
      usage: {
        seconds: Math.round(seconds * 100) / 100,
        window: [Math.round(start), Math.round(start + seconds * 1000)],
        control: controlUsage,
        controlCpuS: Math.round(controlUsage.cpuPct * seconds) / 100,
        sim,
        benchCpuPct: Math.round((cpu.user + cpu.system) / 1e4 / seconds * 10) / 10,
        otherLoadPct,
        push,
        simLoopDelayMaxMs: Math.round(Math.max(...stats.map((s) => s.stats.loopDelayMaxMs)) * 10) / 10,
      },
    }
  }

  const ledger = new Ledger(watchersOf)
  const collect = async (): Promise<void> => {
    for (const w of workers) ledger.add((await w.call<{ arrivals: Arrival[] }>({ cmd: 'collect' })).arrivals)
  }
  /** Waits until every watcher of these changes has them (or the timeout); returns when the last arrived. */
  const settle = async (changes: Change[], timeoutMs = 15_000): Promise<void> => {
    const deadline = now() + timeoutMs
    for (;;) {
      await collect()
      if (ledger.latencies(changes).missing === 0 || now() > deadline) return
      await sleep(100)
    }
  }

  /** Other engineers' tests share this machine: wait (a while) until they leave the CPUs alone. */
  const quiet = async (): Promise<void> => {
    if (!o.waitQuiet) return
    const pct = await waitForQuiet(20, o.quietWaitS * 1000, (p) => log(`  waiting up to ${o.quietWaitS} s for other processes to calm down (${p} % of a core)…`))
    if (pct >= 20) log(`  other processes still use ${pct} % of a core; measuring anyway (column "other")`)
  }

  // Idle: the catalog loaded, no sidecar yet.
  await quiet()
  log('idle (no sidecars) 3 s…')
  const idle = await measure(() => sleep(3000))

  // Subscription: every sidecar connects and opens its watches; done when every watch has its snapshot.
  log(`subscribing ${o.sidecars} sidecars × ${o.watches} watches…`)
  const perWorker = workers.map((_, i) => specs.filter((_, j) => j % o.workers === i))
  const subscribe = await measure(async () => {
    const start = now()
    const replies = await Promise.all(workers.map((w, i) => w.call<{ done: number, watches: number, answered: number }>({
      cmd: 'init', base: String(base), addr: `127.0.0.1:${discoveryPort}`, sidecars: perWorker[i], concurrency: o.concurrency, timeoutMs: 60_000,
    })))
    return { ms: Math.max(...replies.map((r) => r.done)) - start, watches: replies.reduce((a, r) => a + r.watches, 0), answered: replies.reduce((a, r) => a + r.answered, 0) }
  })
  log(`  ${subscribe.result.answered}/${subscribe.result.watches} watches answered in ${Math.round(subscribe.result.ms)} ms`)

  log('subscribed, idle 3 s…')
  const held = await measure(() => sleep(3000))

  // Steady: `rate` changes/s on random services (each at most once per 3 s) and one on the hot service per second.
  await quiet()
  log(`steady: ${o.rate} changes/s + 1 hot change/s for ${o.durationS} s…`)
  const hot = services[0]
  const steady = await measure(async () => {
    const start = now()
    const changes: Change[] = []
    const schedule: Array<{ at: number, hot: boolean }> = []
    for (let i = 0; i < o.rate * o.durationS; i++) schedule.push({ at: start + i * 1000 / o.rate, hot: false })
    for (let k = 0; k < o.durationS; k++) schedule.push({ at: start + k * 1000 + 25, hot: true })
    schedule.sort((a, b) => a.at - b.at)
    for (const { at, hot: isHot } of schedule) {
      const wait = at - now()
      if (wait > 1) await sleep(wait)
      if (isHot) {
        changes.push(ledger.flip(api, kube, hot, 'hot', pick))
        continue
      }
      let svc: SvcModel
      do svc = services[1 + Math.floor(pick() * (o.services - 1))]
      while (now() - svc.lastChange < 3000)
      changes.push(ledger.flip(api, kube, svc, 'steady', pick))
    }
    await settle(changes)
    return changes
  })

  // Burst: many services at once (the hot one among them), in one turn of the event loop.
  log(`burst: ${o.burst} changes at once…`)
  await quiet()
  let applyMs = 0
  const burst = await measure(async () => {
    const chosen = new Set<number>(o.burst > 0 ? [0] : [])
    while (chosen.size < o.burst) chosen.add(1 + Math.floor(pick() * (o.services - 1)))
    const changes = [...chosen].map((i) => ledger.flip(api, kube, services[i], 'burst', pick))
    // The fake API's watch response is corked until the loop ends: the changes leave together, now.
    const sent = now()
    applyMs = changes.length === 0 ? 0 : sent - changes[0].t
    for (const c of changes) c.t = sent
    await settle(changes)
    return changes
  })

  // Correctness: every watch holds exactly the ready endpoints of its service.
  await sleep(500)
  await collect()
  const expected: Record<string, string[]> = {}
  for (const s of services) expected[s.authority] = expectedKeys(s)
  const verified = await Promise.all(workers.map((w) => w.call<{ mismatches: Mismatch[], watches: number }>({ cmd: 'verify', expected })))
  const mismatches = verified.flatMap((v) => v.mismatches)
  const stats = (await Promise.all(workers.map((w) => w.call<{ stats: WorkerStats }>({ cmd: 'stats' })))).map((s) => s.stats)
  const counts = stats.reduce<WorkerCounts>((acc, s) => {
    for (const k of Object.keys(acc) as Array<keyof WorkerCounts>) acc[k] += s.counts[k]
    return acc
  }, { snapshot: 0, delta: 0, absent: 0, resnapshot: 0, gaps: 0, badMessages: 0, badStatus: 0, streamErrors: 0, streamEnds: 0, sessionErrors: 0, bytes: 0 })

  const steadyRandom = ledger.latencies(steady.result.filter((c) => c.phase === 'steady'))
  const steadyHot = ledger.latencies(steady.result.filter((c) => c.phase === 'hot'))
  const steadyAll = ledger.latencies(steady.result)
  const burstLat = ledger.latencies(burst.result)
  const burstEndToEnd = burst.result.length === 0 ? 0 : burstLat.lastArrival - burst.result[0].t

  await Promise.all(workers.map((w) => w.call({ cmd: 'close' })))
  for (const w of workers) w.proc.disconnect()
  await stopChild(control, 15_000)
  await api.close()

  const report = {
    when: new Date().toISOString(),
    node: process.version,
    cpus: `${cpus} × ${os.cpus()[0]?.model ?? '?'}`,
    options: o,
    layout,
    simulation: `${o.workers} worker processes (node:http2 clients), ${o.concurrency} connecting at once per worker`,
    controlPlane: o.js ? 'compiled JavaScript (tsconfig.build.json)' : 'TypeScript via type stripping (src/cli.ts)',
    readyMs: Math.round(readyMs),
    subscription: { ...subscribe.result, ms: Math.round(subscribe.result.ms) },
    latencyMs: {
      steadyRandom: { perDelivery: dist(steadyRandom.each), perChangeAllWatchers: dist(steadyRandom.last), missing: steadyRandom.missing, deliveries: steadyRandom.expected },
      steadyHot: { perDelivery: dist(steadyHot.each), perChangeAllWatchers: dist(steadyHot.last), missing: steadyHot.missing, deliveries: steadyHot.expected },
      steadyAll: { perDelivery: dist(steadyAll.each), perChangeAllWatchers: dist(steadyAll.last), missing: steadyAll.missing, deliveries: steadyAll.expected },
      burst: { perDelivery: dist(burstLat.each), perChangeAllWatchers: dist(burstLat.last), missing: burstLat.missing, deliveries: burstLat.expected, allDeliveredMs: Math.round(burstEndToEnd), fakeApiApplyMs: Math.round(applyMs) },
    },
    phases: { idle: idle.usage, subscribe: subscribe.usage, subscribedIdle: held.usage, steady: steady.usage, burst: burst.usage },
    changes: { steady: steady.result.filter((c) => c.phase === 'steady').length, hot: steady.result.filter((c) => c.phase === 'hot').length, burst: burst.result.length },
    correctness: { watches: verified.reduce((a, v) => a + v.watches, 0), mismatches: mismatches.length, examples: mismatches.slice(0, 10), messages: counts, lastErrors: stats.map((s) => s.lastError).filter((e) => e !== undefined) },
  }
  const file = join(resultsDir, `control-${stamp}.json`)
  writeFileSync(file, JSON.stringify(report, null, 2) + '\n')
  process.stdout.write(format(report, o) + `\nresults: ${file}\n`)

  if (o.cpuProf) {
    const prof = join(profDir, 'control.cpuprofile')
    if (existsSync(prof)) {
      const profile = JSON.parse(readFileSync(prof, 'utf8')) as Profile
      process.stdout.write(`\ncontrol plane CPU profile (${prof}), whole run:\n${summarize(profile, 15)}`)
      for (const [phase, u] of Object.entries(report.phases)) {
        if (phase.includes('dle')) continue
        const part = slice(profile, u.window)
        if (part.samples.length > 1) process.stdout.write(`\n--- control plane CPU profile, phase "${phase}" only:\n${summarize(part, 15)}`)
      }
    }
    else process.stdout.write(`\nno CPU profile was written (the control plane did not exit cleanly); see ${join(tmp, 'control.log')}\n`)
  }
  if (!o.keepTmp) rmSync(tmp, { recursive: true, force: true })
  else process.stdout.write(`temp dir kept: ${tmp}\n`)
  const failed = mismatches.length > 0 || steadyAll.missing > 0 || burstLat.missing > 0 || counts.gaps > 0 || counts.absent > 0 || counts.streamEnds > 0
  process.exitCode = failed ? 1 : 0
}

type Report = Record<string, unknown> & {
  latencyMs: Record<string, { perDelivery: Dist | null, perChangeAllWatchers: Dist | null, missing: number, deliveries: number, allDeliveredMs?: number, fakeApiApplyMs?: number }>
  phases: Record<string, PhaseUsage>
  subscription: { ms: number, watches: number, answered: number }
  correctness: { watches: number, mismatches: number, examples: Mismatch[], messages: WorkerCounts, lastErrors: string[] }
  readyMs: number
  simulation: string
  layout: string
  controlPlane: string
}

function format (r: Report, o: Options): string {
  const pad = (s: string, n: number): string => s.length >= n ? s : s + ' '.repeat(n - s.length)
  const lpad = (s: string, n: number): string => s.length >= n ? s : ' '.repeat(n - s.length) + s
  const ms = (x: number | null | undefined): string => x === null || x === undefined ? '-' : x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(x < 10 ? 1 : 0)} ms`
  const lines: string[] = []
  lines.push('', `remora control: ${o.sidecars} sidecars × ${o.watches} watches, ${o.services} services × ${o.endpoints} endpoints — ${r.controlPlane}`)
  lines.push(`simulation: ${r.simulation}; ${r.layout}`)
  lines.push(`start-up: ready (first full view of ${o.services} Services / ${o.services * o.endpoints} Pods) in ${ms(r.readyMs)}; ` +
    `subscription: ${r.subscription.answered}/${r.subscription.watches} watches with their snapshot in ${ms(r.subscription.ms)}`)
  lines.push('', 'latency, EndpointSlice applied → delta parsed by the sidecar')
  lines.push(`  ${pad('', 44)}${['n', 'p50', 'p90', 'p99', 'max'].map((h) => lpad(h, 9)).join('')}   missing`)
  const row = (label: string, d: Dist | null, missing: number | string): void => {
    lines.push(`  ${pad(label, 44)}${d === null ? lpad('-', 9).repeat(5) : [String(d.n), ms(d.p50), ms(d.p90), ms(d.p99), ms(d.max)].map((x) => lpad(x, 9)).join('')}   ${missing}`)
  }
  const L = r.latencyMs
  row('steady, random services (per delivery)', L.steadyRandom.perDelivery, L.steadyRandom.missing)
  row('steady, hot service (per delivery)', L.steadyHot.perDelivery, L.steadyHot.missing)
  row('steady, hot fan-out (until all have it)', L.steadyHot.perChangeAllWatchers, '')
  row('steady, all deliveries', L.steadyAll.perDelivery, L.steadyAll.missing)
  row('steady, per change until all watchers', L.steadyAll.perChangeAllWatchers, '')
  row(`burst of ${o.burst} (per delivery)`, L.burst.perDelivery, L.burst.missing)
  row('burst, per change until all watchers', L.burst.perChangeAllWatchers, '')
  lines.push(`  burst: the fake API applied the ${o.burst} changes in ${ms(L.burst.fakeApiApplyMs)} and sent them together; burst latencies count from then. Sent → last delivery: ${ms(L.burst.allDeliveredMs)}`)
  const target = L.steadyAll.perDelivery
  if (target !== null) lines.push(`  target "a change reaches every watching sidecar in under 1 s at p99": steady p99 ${ms(target.p99)}, burst p99 ${ms(L.burst.perDelivery?.p99)} → ${target.p99 < 1000 && (L.burst.perDelivery?.p99 ?? 0) < 1000 ? 'met' : 'MISSED'}`)
  lines.push('', 'control plane per phase (CPU % of one core; RSS peak; push = one catalog change written to all its watches, from /metrics;',
    '  heap, GC, loop lag: the control plane\'s own metrics; sim = the simulation workers together (CPU, worst event-loop delay);',
    '  API = the bench process serving the fake Kubernetes API; other = CPU used meanwhile by processes outside this bench)')
  const head = ['phase', 'time', 'CPU', 'CPU s', 'RSS', 'heap', 'GC', 'loop lag max', 'pushes', 'push mean', 'push p99≤', 'msgs', 'sim CPU', 'sim lag max', 'API CPU', 'other']
  const widths = [16, 8, 8, 8, 10, 9, 9, 13, 8, 10, 10, 9, 10, 12, 9, 7]
  lines.push('  ' + head.map((h, i) => i === 0 ? pad(h, widths[i]) : lpad(h, widths[i])).join(''))
  const labels: Record<string, string> = { idle: 'idle, no watch', subscribe: 'subscribing', subscribedIdle: 'idle, subscribed', steady: 'steady changes', burst: 'burst' }
  for (const [k, u] of Object.entries(r.phases)) {
    const msgs = Object.values(u.push.messages).reduce((a, b) => a + b, 0)
    const cells = [
      labels[k] ?? k, `${u.seconds.toFixed(1)} s`, `${u.control.cpuPct.toFixed(0)} %`, u.controlCpuS.toFixed(2), `${u.control.peakRssMb.toFixed(0)} MiB`,
      `${u.push.heapUsedMb.toFixed(0)} MiB`, ms(u.push.gcMs), ms(u.push.loopLagMaxMs), String(u.push.count), ms(u.push.meanMs), ms(u.push.p99LeMs), String(msgs),
      `${u.sim.reduce((a, x) => a + x.cpuPct, 0).toFixed(0)} %`, ms(u.simLoopDelayMaxMs), `${u.benchCpuPct.toFixed(0)} %`, `${u.otherLoadPct} %`,
    ]
    lines.push('  ' + cells.map((c, i) => i === 0 ? pad(c, widths[i]) : lpad(c, widths[i])).join(''))
  }
  const c = r.correctness
  const m = c.messages
  lines.push('', `correctness: ${c.watches} watches checked against the cluster: ${c.mismatches === 0 ? 'all hold exactly the ready endpoints' : `${c.mismatches} MISMATCHES`}`)
  lines.push(`  messages received: ${m.snapshot} snapshots, ${m.delta} deltas, ${m.absent} absent, ${(m.bytes / 2 ** 20).toFixed(1)} MiB; ` +
    `gaps ${m.gaps}, re-snapshots ${m.resnapshot}, bad messages ${m.badMessages}, bad status ${m.badStatus}, stream errors ${m.streamErrors}, streams ended ${m.streamEnds}, session errors ${m.sessionErrors}`)
  for (const x of c.examples) lines.push(`  mismatch: sidecar ${x.sidecar} ${x.authority}: expected ${x.expected} endpoints, has ${x.got}; missing ${x.missing.join(' ')} extra ${x.extra.join(' ')}`)
  for (const e of c.lastErrors) lines.push(`  worker error: ${e}`)
  return lines.join('\n') + '\n'
}

type Profile = Parameters<typeof summarize>[0]

/**
 * The samples of a V8 CPU profile taken within a window of the bench clock. V8 stamps profiles with
 * CLOCK_MONOTONIC in µs, the clock process.hrtime reads, so the bench's phase times line up with it.
 */
function slice (p: Profile, [from, to]: [number, number]): Profile {
  const zero = Number(base / 1000n)
  const lo = zero + from * 1000
  const hi = zero + to * 1000
  const samples: number[] = []
  const deltas: number[] = []
  let t = p.startTime
  let last = lo
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i] ?? 0
    if (t < lo || t > hi) continue
    samples.push(p.samples[i])
    deltas.push(t - last)
    last = t
  }
  return { ...p, startTime: lo, endTime: hi, samples, timeDeltas: deltas }
}

if (process.argv.includes('--worker')) {
  void workerMain()
} else {
  main().catch((err: unknown) => {
    process.stderr.write(`bench:control failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
    if (tmpToRemove !== undefined) rmSync(tmpToRemove, { recursive: true, force: true })
    process.exit(1)
  })
}
