// `npm run bench`: remora vs direct, nginx, HAProxy and a naive Node proxy on this machine, side by side; and opaque TCP (tcp.ts, origdst.ts).
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import http2 from 'node:http2'
import os from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { eachFlag, parseCount, parseWholeSeconds, runFlag, type RunFlags } from './flags.ts'
import { fixedRate, h2load, wrk, type LoadResult, type RunContext } from './loadgen.ts'
import { installCleanup, stopAll, stopChild, which } from './procs.ts'
import { formatReport, type CaseResult } from './report.ts'
import { runOrigDst } from './origdst.ts'
import { runStartup } from './startup.ts'
import { runIdleConns } from './idle.ts'
import { runGrpcUnary } from './grpc.ts'
import { chartSvg } from './chart.ts'
import { bundle, IMAGE_NODE_FLAGS } from '../scripts/bundle.ts'
import { ForeignLoad, Sampler, waitForQuiet, type ProcUsage, type SampleTarget } from './sample.ts'
import { runTcpBulk, runTcpFirstByte, type TcpRun } from './tcp.ts'
import { startApp, startHaproxy, startNaive, startNginx, startRemora, type Env, type Pinning, type Running } from './topologies.ts'

const ROOT = new URL('..', import.meta.url).pathname
const APT = 'sudo apt-get install -y wrk nghttp2-client nginx-light haproxy'

interface Options extends RunFlags {
  durationS: number
  warmupS: number
  connections: number
  rate: number
  only?: Set<string>
  retries: number
  rev?: string
  tcpMib: number
  tcpReps: number
  firstByteSamples: number
}

function usage (): string {
  return `usage: npm run bench -- [options]      (or: npx node bench/run.ts [options])

Runs every case one after the other on this machine and prints a table; results also go to
bench/results/<timestamp>.json, and a chart of them to bench/results/<timestamp>.svg. Defaults take about 4-5 minutes on a quiet machine (the opaque-TCP cases about 40 s of it).

options:
  --duration 5s       measured time of each load run (wrk, h2load, fixed-rate); e.g. 30s for steadier numbers
  --warmup 2s         unmeasured load before each run (JIT warm-up, connection pools)
  --connections 50    wrk connections (HTTP/1.1 max throughput)
  --rate 1000         requests per second of the fixed-rate latency runs
  --tcp-mib 128       tcp-bulk: MiB per transfer (one connection each, each direction)
  --tcp-reps 5        tcp-bulk: measured transfers per path and direction (the median is reported)
  --first-byte-samples 200
                      tcp-first-byte: sequential connections per path
  --only a,b          run only these cases (ids: ${CASES.map((c) => c.id).join(', ')})
  --no-pin            don't pin processes to CPUs with taskset
  --cpu-prof          run the sidecars with node --cpu-prof; profiles land in bench/results/prof-<timestamp>/
  --rev <git-rev>     benchmark remora as committed at that revision (git archive into the temp dir) instead of
                      the working tree's src/, e.g. while src/ is mid-edit
  --src               run the sidecars from src/ with Node's type stripping instead of the esbuild bundle the
                      image ships (npm run build; the default): ~30 MB more RSS, the same throughput
  --node-options "…"  extra node flags for the remora sidecars only, e.g. "--max-semi-space-size=2"
  --keep-tmp          keep the temp dir (configs, logs, h2load per-request logs)
  --no-wait-quiet     don't wait for other processes on the machine to calm down before each run
  --quiet-wait 20s    how long to wait at most for that (other processes under 20% of a core)
  --retries 2         repeat a run that other processes disturbed anyway (≥ 20% of a core), keeping the least
                      disturbed one; the CPU they used is reported per run ("other load %") either way

tools: wrk, h2load, nginx and haproxy are optional; a missing one skips its cases. Install with
  ${APT}
`
}

function parseArgs (argv: string[]): Options {
  const o: Options = { durationS: 5, warmupS: 2, connections: 50, rate: 1000, pin: true, cpuProf: false, keepTmp: false, waitQuiet: true, quietWaitS: 20, retries: 2, src: false, nodeOptions: [], tcpMib: 128, tcpReps: 5, firstByteSamples: 200 }
  eachFlag(argv, usage, (flag, value) => {
    switch (flag) {
      case '--duration': o.durationS = parseWholeSeconds(value()); break
      case '--warmup': o.warmupS = parseWholeSeconds(value()); break
      case '--connections': o.connections = Number(value()); break
      case '--rate': o.rate = Number(value()); break
      case '--only': o.only = new Set(value().split(',').map((s) => s.trim())); break
      case '--retries': o.retries = Number(value()); break
      case '--rev': o.rev = value(); break
      case '--tcp-mib': o.tcpMib = parseCount(flag, value()); break
      case '--tcp-reps': o.tcpReps = parseCount(flag, value()); break
      case '--first-byte-samples': o.firstByteSamples = parseCount(flag, value()); break
      default: return runFlag(o, flag, value)
    }
    return true
  })
  return o
}

interface CaseDef {
  id: string
  label: string
  proto: CaseResult['proto']
  tool?: 'nginx' | 'haproxy' | 'h2load'
  /** HTTP cases: the path under test, loaded by wrk / h2load and fixed-rate.ts. */
  start?: (env: Env) => Promise<Running>
  /** Opaque-TCP cases: run whole (their own topology and load), their figures merged into the result. */
  run?: (env: Env, tcp: TcpRun) => Promise<Partial<CaseResult>>
}

const CASES: CaseDef[] = [
  { id: 'direct', label: 'direct (no proxy)', proto: 'HTTP/1.1', start: async (env) => ({ port: env.appPort, proxies: [], stop: async () => {} }) },
  { id: 'naive', label: 'naive node proxy, 1 hop', proto: 'HTTP/1.1', start: (env) => startNaive(env) },
  { id: 'remora-1', label: 'remora 1 hop (inbound)', proto: 'HTTP/1.1', start: (env) => startRemora(env, 1) },
  { id: 'remora-2', label: 'remora 2 hops', proto: 'HTTP/1.1', start: (env) => startRemora(env, 2) },
  { id: 'remora-2-log', label: 'remora 2 hops, access log on', proto: 'HTTP/1.1', start: (env) => startRemora(env, 2, { accessLog: true }) },
  { id: 'remora-2-mtls', label: 'remora 2 hops, mTLS, 1 % traced', proto: 'HTTP/1.1', start: (env) => startRemora(env, 2, { secure: 'mtls+tracing' }) },
  { id: 'nginx-1', label: 'nginx 1 hop', proto: 'HTTP/1.1', tool: 'nginx', start: (env) => startNginx(env, 1) },
  { id: 'nginx-2', label: 'nginx 2 hops', proto: 'HTTP/1.1', tool: 'nginx', start: (env) => startNginx(env, 2) },
  { id: 'haproxy-1', label: 'haproxy 1 hop', proto: 'HTTP/1.1', tool: 'haproxy', start: (env) => startHaproxy(env, 1) },
  { id: 'haproxy-2', label: 'haproxy 2 hops', proto: 'HTTP/1.1', tool: 'haproxy', start: (env) => startHaproxy(env, 2) },
  { id: 'haproxy-2-tls', label: 'haproxy 2 hops, TLS between', proto: 'HTTP/1.1', tool: 'haproxy', start: (env) => startHaproxy(env, 2, false, true) },
  { id: 'remora-2-h2', label: 'remora 2 hops, h2 client', proto: 'h2', start: (env) => startRemora(env, 2) },
  { id: 'remora-1-h2', label: 'remora 1 hop, h2c client', proto: 'h2', start: (env) => startRemora(env, 1) },
  { id: 'haproxy-1-h2', label: 'haproxy 1 hop, h2c client', proto: 'h2', tool: 'haproxy', start: (env) => startHaproxy(env, 1, true) },
  { id: 'tcp-bulk', label: 'opaque TCP bulk, direct vs 2 hops', proto: 'TCP', run: (env, tcp) => runTcpBulk(env, tcp) },
  { id: 'tcp-first-byte', label: 'opaque TCP first byte, direct vs 2 hops', proto: 'TCP', run: (env, tcp) => runTcpFirstByte(env, tcp) },
  { id: 'origdst', label: 'SO_ORIGINAL_DST lookup per connection', proto: 'TCP', run: (env, tcp) => runOrigDst(env, tcp) },
  { id: 'startup', label: 'start-up and idle footprint', proto: 'start-up', run: async (env, tcp) => ({ startup: await runStartup(env, 5, tcp.log) }) },
  { id: 'grpc-unary', label: 'gRPC unary, direct vs 2 hops', proto: 'gRPC', tool: 'h2load', run: async (env, tcp) => await runGrpcUnary(env, tcp.ctx, tcp.log, tcp.durationS) },
  { id: 'idle-conns', label: '10,000 idle connections to a sidecar', proto: 'start-up', run: async (env, tcp) => await runIdleConns(env, tcp.log) },
]

function cpuLayout (enabled: boolean): { pin: Pinning, note: string } {
  if (!enabled) return { pin: {}, note: 'not pinned (--no-pin)' }
  if (which('taskset') === undefined) return { pin: {}, note: 'not pinned (taskset not found; it is in util-linux)' }
  let cpus: number[] = []
  try {
    const list = /^Cpus_allowed_list:\s*(\S+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? ''
    for (const part of list.split(',')) {
      const [a, b] = part.split('-').map(Number)
      for (let c = a; c <= (b ?? a); c++) cpus.push(c)
    }
  } catch { cpus = [] }
  const c = cpus.map(String)
  if (c.length >= 4) return { pin: { loadgen: c[0], app: c[1], hop1: c[2], hop2: c[3] }, note: `load generator cpu ${c[0]}, app cpu ${c[1]}, proxy hop 1 cpu ${c[2]}, hop 2 cpu ${c[3]}` }
  if (c.length === 3) return { pin: { loadgen: c[0], app: c[1], hop1: c[2], hop2: c[2] }, note: `load generator cpu ${c[0]}, app cpu ${c[1]}, every proxy cpu ${c[2]}` }
  if (c.length === 2) return { pin: { loadgen: c[0], app: c[0], hop1: c[1], hop2: c[1] }, note: `only 2 CPUs: load generator + app share cpu ${c[0]}; every proxy (both hops) on cpu ${c[1]}` }
  return { pin: {}, note: 'not pinned (1 CPU)' }
}

function version (cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).split('\n')[0].trim()
  } catch (err) {
    const e = err as { stdout?: string, stderr?: string }
    return `${e.stdout ?? ''}${e.stderr ?? ''}`.split('\n').find((l) => l.trim() !== '')?.trim() ?? '?'
  }
}

function git (args: string[]): string {
  try { return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() } catch { return '' }
}

/** One GET through the path under test before any load: right status, right body. */
async function validateH1 (port: number, host: string | undefined, expected: string): Promise<void> {
  const res = await request(`http://127.0.0.1:${port}/bench`, { headers: host !== undefined ? { host } : {} })
  const body = await res.body.text()
  if (res.statusCode !== 200 || body !== expected) throw new Error(`check request failed: HTTP ${res.statusCode}: ${body.slice(0, 300)}`)
}

async function validateH2 (port: number, authority: string | undefined, expected: string): Promise<void> {
  const session = http2.connect(`http://127.0.0.1:${port}`)
  try {
    const body = await new Promise<{ status: number, body: string }>((resolve, reject) => {
      session.once('error', reject)
      const req = session.request({ ':path': '/bench', ':authority': authority ?? `127.0.0.1:${port}` })
      let status = 0
      let text = ''
      req.on('response', (h) => { status = Number(h[':status']) })
      req.setEncoding('utf8')
      req.on('data', (c: string) => { text += c })
      req.once('end', () => resolve({ status, body: text }))
      req.once('error', reject)
    })
    if (body.status !== 200 || body.body !== expected) throw new Error(`h2 check request failed: HTTP ${body.status}: ${body.body.slice(0, 300)}`)
  } finally { session.close() }
}

interface Measured<T> { result: T, usage: ProcUsage[], app: ProcUsage, otherLoadPct: number, appConnections: number }

/** The app's counters, asked over a connection of its own (counted by the app before it answers). */
async function appStats (port: number): Promise<{ connections: number, requests: number }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/__bench/stats', agent: false }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { text += c })
      res.once('end', () => resolve(JSON.parse(text) as { connections: number, requests: number }))
    }).once('error', reject)
  })
}

interface QuietPolicy {
  /** Wait for other processes to calm down before each run. */
  wait: boolean
  waitMs: number
  /** Repeat a run that other processes disturbed anyway, up to this many times; keep the least disturbed. */
  retries: number
  log: (line: string) => void
}

/** Other processes using more than this (% of one core) during a run make its numbers suspect. */
const QUIET_PCT = 20
let quiet: QuietPolicy = { wait: true, waitMs: 20_000, retries: 2, log: () => {} }

/** Runs one load while sampling the proxies, the app and the rest of the machine; repeats disturbed runs. */
async function measured<T> (targets: SampleTarget[], app: SampleTarget & { port: number }, run: () => Promise<T>): Promise<Measured<T>> {
  let best: Measured<T> | undefined
  for (let attempt = 0; attempt <= quiet.retries; attempt++) {
    if (attempt > 0) quiet.log(`  other processes used ${best?.otherLoadPct}% CPU during that run; repeating it (${attempt}/${quiet.retries})…`)
    const m = await measureOnce(targets, app, run)
    if (best === undefined || m.otherLoadPct < best.otherLoadPct) best = m
    if (m.otherLoadPct < QUIET_PCT) break
  }
  return best as Measured<T>
}

async function measureOnce<T> (targets: SampleTarget[], app: SampleTarget & { port: number }, run: () => Promise<T>): Promise<Measured<T>> {
  if (quiet.wait) {
    const started = Date.now()
    const pct = await waitForQuiet(QUIET_PCT, quiet.waitMs, (pct) => quiet.log(`  other processes use ${pct}% CPU; waiting up to ${quiet.waitMs / 1000}s for a quieter machine…`))
    if (Date.now() - started > 1000) quiet.log(`  …${pct < QUIET_PCT ? 'quiet now' : `still ${pct}%, measuring anyway`}`)
  }
  const sampler = new Sampler([...targets, app])
  const foreign = new ForeignLoad()
  const before = (await appStats(app.port)).connections
  foreign.start()
  sampler.start()
  try {
    const result = await run()
    const all = sampler.stop()
    const otherLoadPct = foreign.stop()
    const appConnections = (await appStats(app.port)).connections - before - 1
    return { result, usage: all.slice(0, -1), app: all[all.length - 1], otherLoadPct, appConnections }
  } catch (err) {
    sampler.stop()
    throw err
  }
}

async function main (): Promise<void> {
  const o = parseArgs(process.argv.slice(2))
  installCleanup(() => { if (tmpToRemove !== undefined) rmSync(tmpToRemove, { recursive: true, force: true }) })
  const started = new Date()
  const stamp = started.toISOString().replace(/[:.]/g, '-')
  const tools = { wrk: which('wrk'), h2load: which('h2load'), nginx: which('nginx'), haproxy: which('haproxy') }
  const missing = Object.entries(tools).filter(([, p]) => p === undefined).map(([t]) => t)
  const layout = cpuLayout(o.pin)
  const log = (line: string): void => { process.stderr.write(line + '\n') }
  quiet = { wait: o.waitQuiet, waitMs: o.quietWaitS * 1000, retries: o.retries, log }

  log(`remora bench — node ${process.version}, ${os.availableParallelism()} CPUs (${os.cpus()[0]?.model ?? '?'})`)
  log(`pinning: ${layout.note}`)
  log(`each run: ${o.warmupS}s warm-up + ${o.durationS}s measured; wrk -t1 -c${o.connections}; fixed rate ${o.rate} req/s`)
  if (missing.length > 0) {
    log(`missing: ${missing.join(', ')} — the runs that need them are skipped. Install: ${APT}`)
  }
  if (!process.version.startsWith('v24') && Number(process.versions.node.split('.')[0]) < 24) {
    log(`note: remora pins Node 24; this is ${process.version}. Use \`npm run bench\` or \`npx node bench/run.ts\`.`)
  }

  const tmp = mkdtempSync(join(os.tmpdir(), 'remora-bench-'))
  if (!o.keepTmp) tmpToRemove = tmp
  const resultsDir = join(ROOT, 'bench/results')
  mkdirSync(resultsDir, { recursive: true })
  const profDir = join(resultsDir, `prof-${stamp}`)
  if (o.cpuProf) mkdirSync(profDir, { recursive: true })
  let seq = 0
  const ctx: RunContext = { tmp, cpus: layout.pin.loadgen, seq: () => ++seq }

  let cli = join(ROOT, 'src/cli.ts')
  const head = git(['rev-parse', '--short', 'HEAD'])
  let source = head === '' ? 'working tree (git not available)' : `working tree at ${head}${git(['status', '--porcelain', 'src']) !== '' ? ' + uncommitted changes in src/' : ''}`
  if (o.rev !== undefined) {
    cli = checkout(o.rev, tmp)
    source = `git ${o.rev} (${git(['rev-parse', '--short', o.rev])})`
  }
  // The checkout whose src/ runs (working tree or --rev); the origdst case loads one module from it.
  const root = join(cli, '../..')
  if (!o.src) {
    log('building remora as the image ships it (the esbuild bundle, npm run build)…')
    await bundle({ root, out: join(tmp, 'layer'), layer: true })
    cli = join(tmp, 'layer/dist/cli.js')
    source += ', the esbuild bundle as the image ships it'
  } else {
    source += ', from src/ with Node\'s type stripping (~30 MB more RSS than the bundle)'
  }
  source += `, sidecars run with ${[...IMAGE_NODE_FLAGS, ...o.nodeOptions].join(' ')} (the image's flags first)`
  log(`remora: ${source}`)

  const app = await startApp(tmp, layout.pin.app)
  const appTarget = { label: 'app', pid: app.child.pid, port: app.port }
  const expected = await (await request(`http://127.0.0.1:${app.port}/`)).body.text()
  const env: Env = {
    tmp,
    pin: layout.pin,
    appPort: app.port,
    cli,
    root,
    // As the image runs them (its V8 flags), then any given here (a later flag wins).
    sidecarNodeArgs: (name) => [...IMAGE_NODE_FLAGS, ...o.nodeOptions, ...(o.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`, `--cpu-prof-name=${name}.cpuprofile`] : [])],
  }

  const selected = CASES.filter((c) => o.only === undefined || o.only.has(c.id))
  if (o.only !== undefined) {
    const unknown = [...o.only].filter((id) => !CASES.some((c) => c.id === id))
    if (unknown.length > 0) throw new Error(`unknown case id(s) ${unknown.join(', ')}; known: ${CASES.map((c) => c.id).join(', ')}`)
  }
  const tcp: TcpRun = {
    ctx,
    log,
    waitQuiet: async () => {
      if (!quiet.wait) return
      const pct = await waitForQuiet(QUIET_PCT, quiet.waitMs, (pct) => log(`  other processes use ${pct}% CPU; waiting up to ${quiet.waitMs / 1000}s for a quieter machine…`))
      if (pct >= QUIET_PCT) log(`  …still ${pct}%, measuring anyway`)
    },
    bulkMib: o.tcpMib,
    bulkReps: o.tcpReps,
    firstByteSamples: o.firstByteSamples,
    durationS: o.durationS,
  }
  const results: CaseResult[] = []
  const t0 = performance.now()
  for (const [i, c] of selected.entries()) {
    const r: CaseResult = { id: c.id, label: c.label, proto: c.proto }
    results.push(r)
    const progress = `[${i + 1}/${selected.length}] ${c.label}`
    if (c.tool !== undefined && tools[c.tool] === undefined) { r.skipped = `${c.tool} not installed`; log(`${progress}: skipped (${r.skipped})`); continue }
    let running: Running | undefined
    try {
      if (c.run !== undefined) {
        log(`${progress}…`)
        Object.assign(r, await c.run(env, tcp))
        continue
      }
      if (c.start === undefined) throw new Error(`case ${c.id} has neither start nor run`)
      running = await c.start(env)
      const targets = running.proxies.map((p) => ({ label: p.label, pid: p.child.pid }))
      const url = `http://127.0.0.1:${running.port}/`
      if (c.proto === 'HTTP/1.1') {
        await validateH1(running.port, running.host, expected)
        log(`${progress}: fixed ${o.rate} req/s…`)
        const fixed = await measured(targets, appTarget, () => fixedRate(ctx, {
          origin: `http://127.0.0.1:${running?.port}`, path: '/', host: running?.host, rate: o.rate,
          warmupMs: o.warmupS * 1000, durationMs: o.durationS * 1000, connections: 16,
        }))
        r.fixed = { ...toPhase(fixed.result), usage: fixed.usage, app: fixed.app, otherLoadPct: fixed.otherLoadPct, appConnections: fixed.appConnections }
        if (tools.wrk === undefined) {
          r.throughputSkipped = 'wrk not installed'
        } else {
          log(`${progress}: wrk max throughput…`)
          await wrk(ctx, url, running.host, o.connections, o.warmupS)
          const tp = await measured(targets, appTarget, () => wrk(ctx, url, running?.host, o.connections, o.durationS))
          r.throughput = { ...tp.result, usage: tp.usage, app: tp.app, otherLoadPct: tp.otherLoadPct, appConnections: tp.appConnections }
        }
      } else {
        await validateH2(running.port, running.host, expected)
        // h2load --rps sends its requests in bursts (up to -m at once every ~10 ms), which measures how
        // fast a burst drains rather than per-request latency: the fixed-rate runs use our generator.
        log(`${progress}: fixed ${o.rate} req/s (h2)…`)
        const fixed = await measured(targets, appTarget, () => fixedRate(ctx, {
          origin: `http://127.0.0.1:${running?.port}`, path: '/', host: running?.host, rate: o.rate,
          warmupMs: o.warmupS * 1000, durationMs: o.durationS * 1000, connections: 1, protocol: 'h2',
        }))
        r.fixed = { ...toPhase(fixed.result), usage: fixed.usage, app: fixed.app, otherLoadPct: fixed.otherLoadPct, appConnections: fixed.appConnections }
        if (tools.h2load === undefined) {
          r.throughputSkipped = 'h2load not installed'
        } else {
          log(`${progress}: h2load max throughput (-c10 -m10)…`)
          await h2load(ctx, url, { clients: 10, streams: 10, seconds: o.warmupS, authority: running.host })
          const tp = await measured(targets, appTarget, () => h2load(ctx, url, { clients: 10, streams: 10, seconds: o.durationS, authority: running?.host }))
          r.throughput = { ...tp.result, usage: tp.usage, app: tp.app, otherLoadPct: tp.otherLoadPct, appConnections: tp.appConnections }
        }
      }
      for (const p of running.proxies) if (!p.child.alive) throw new Error(`${p.label} died during the run:\n${p.child.tail()}`)
    } catch (err) {
      r.error = (err as Error).message
      log(`${progress}: FAILED: ${r.error}`)
    } finally {
      await running?.stop()
    }
  }
  await stopChild(app.child)
  await stopAll()

  const finished = new Date()
  const meta = {
    started: started.toISOString(),
    seconds: Math.round((performance.now() - t0) / 1000),
    node: process.version,
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model,
    pinning: layout.note,
    options: { durationS: o.durationS, warmupS: o.warmupS, connections: o.connections, rate: o.rate, only: o.only === undefined ? undefined : [...o.only], rev: o.rev, nodeOptions: o.nodeOptions, tcpMib: o.tcpMib, tcpReps: o.tcpReps, firstByteSamples: o.firstByteSamples },
    remora: source,
    tools: {
      wrk: tools.wrk !== undefined ? version('wrk', ['-v']) : 'missing',
      h2load: tools.h2load !== undefined ? version('h2load', ['--version']) : 'missing',
      nginx: tools.nginx !== undefined ? version('nginx', ['-v']) : 'missing',
      haproxy: tools.haproxy !== undefined ? version('haproxy', ['-v']) : 'missing',
    },
  }
  const report = formatReport(results, meta, o.rate)
  process.stdout.write(report.text)
  const file = join(resultsDir, `${stamp}.json`)
  writeFileSync(file, JSON.stringify({ meta, finished: finished.toISOString(), results, targets: report.targets }, null, 2) + '\n')
  process.stdout.write(`\nresults: ${file}\n`)
  const svg = chartSvg(results, o.rate, `${meta.started} · node ${meta.node} · ${meta.cpus} CPUs · ${source}`)
  if (svg !== undefined) {
    writeFileSync(join(resultsDir, `${stamp}.svg`), svg)
    process.stdout.write(`chart: ${join(resultsDir, `${stamp}.svg`)}\n`)
  }
  if (o.cpuProf) process.stdout.write(`cpu profiles: ${profDir}\n`)
  if (o.keepTmp) process.stdout.write(`temp dir kept: ${tmp}\n`)
  else rmSync(tmp, { recursive: true, force: true })
}

/** `git archive <rev> src package.json tsconfig*.json` into the temp dir, with the project's node_modules linked in. */
function checkout (rev: string, tmp: string): string {
  const dir = join(tmp, 'rev')
  mkdirSync(dir)
  const has = (path: string): boolean => execOk('git', ['cat-file', '-e', `${rev}:${path}`])
  const paths = ['src', 'package.json', ...['tsconfig.json', 'tsconfig.build.json'].filter(has)]
  const tar = execFileSync('git', ['archive', '--format=tar', rev, ...paths], { cwd: ROOT, maxBuffer: 512 * 1024 * 1024 })
  execFileSync('tar', ['-x', '-C', dir], { input: tar })
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'))
  return join(dir, 'src/cli.ts')
}

function execOk (cmd: string, args: string[]): boolean {
  try { execFileSync(cmd, args, { cwd: ROOT, stdio: 'ignore' }); return true } catch { return false }
}

function toPhase (r: { achievedRps: number, p50: number, p99: number, p999: number, ok: number, errors: number, note?: string }): LoadResult {
  return { rps: r.achievedRps, p50: r.p50, p99: r.p99, p999: r.p999, requests: r.ok, errors: r.errors, note: r.note }
}

/** The temp dir, removed on Ctrl-C unless --keep-tmp; kept (and named) when the bench fails. */
let tmpToRemove: string | undefined

main().catch(async (err: unknown) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`)
  await stopAll()
  if (tmpToRemove !== undefined) process.stderr.write(`bench: logs and configs kept in ${tmpToRemove}\n`)
  process.exitCode = 1
})
