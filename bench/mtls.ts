// `npm run bench:mtls`: what mutual TLS costs — the two-hop path (load generator → client sidecar →
// server sidecar → app) in plaintext (mesh file only) and with mTLS (a `remora control` with a
// development CA, sidecars with REMORA_CONTROL_ADDR + REMORA_TRUST_ANCHORS), alternating rounds;
// plus how many new connections per second the server sidecar's inbound port accepts (fresh TLS 1.3
// handshakes with a mesh client certificate vs plaintext h2c) and the CA's signing rate.
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http2 from 'node:http2'
import os from 'node:os'
import { join } from 'node:path'
import tls, { type PeerCertificate } from 'node:tls'
import { spiffeIdOf } from '../src/identity/svid.ts'
import { freePort } from '../test/harness/mesh.ts'
import { buildInPlace } from './build.ts'
import { eachFlag, parsePositive } from './flags.ts'
import { fixedRate, wrk, type LoadResult, type RunContext } from './loadgen.ts'
import { installCleanup, runToEnd, startChild, stopChild, waitForReady, which, type Child } from './procs.ts'
import { ForeignLoad, Sampler, waitForQuiet, type ProcUsage, type SampleTarget } from './sample.ts'
import { portsOf, startSidecars, writePairMesh } from './sidecars.ts'
import { startApp } from './topologies.ts'
import { percentile } from './stats.ts'

const ROOT = new URL('..', import.meta.url).pathname
const SELF = new URL(import.meta.url).pathname
// The identities writePairMesh's workloads get: its namespace, the mesh file's default trust domain.
const TRUST_DOMAIN = 'cluster.local'
const NAMESPACE = 'bench'
const identityOf = (workload: string): string => `spiffe://${TRUST_DOMAIN}/ns/${NAMESPACE}/sa/${workload}`

// ---------------------------------------------------------------------------------------------
// Workers (child processes, so that the load they make is not on the bench's own event loop).

interface HandshakeOptions {
  port: number
  concurrency: number
  warmupMs: number
  durationMs: number
  /** Absent: plaintext h2c. */
  tls?: { key: string, cert: string, ca: string[], serverIdentity: string }
}

export interface HandshakeResult {
  /** Connections (handshake + one request + close) completed per second in the measured window. */
  rate: number
  ok: number
  errors: number
  firstError?: string
  /** Milliseconds from connect() to the response's end, per connection. */
  p50: number
  p99: number
  /** The worker's own CPU over the measured window, % of one core. */
  clientCpuPct: number
}

/** N loops, each: open a new connection (full TLS 1.3 handshake: no session is resumed), one h2 request, close. */
async function handshakeWorker (o: HandshakeOptions): Promise<HandshakeResult> {
  const url = o.tls === undefined ? `http://127.0.0.1:${o.port}` : `https://127.0.0.1:${o.port}`
  const t = o.tls
  const options: http2.SecureClientSessionOptions = t === undefined
    ? {}
    : {
        // One context for every connection, as a sidecar has (built per connection, it costs more than the handshake).
        secureContext: tls.createSecureContext({ key: t.key, cert: t.cert, ca: t.ca }),
        minVersion: 'TLSv1.3',
        ALPNProtocols: ['h2'],
        // The sidecar's certificate names it by SPIFFE ID only (as peer sidecars check it).
        checkServerIdentity: (_name: string, cert: PeerCertificate) => {
          const id = spiffeIdOf(cert)
          return id === t.serverIdentity ? undefined : new Error(`server identity ${id}, expected ${t.serverIdentity}`)
        },
      }
  const one = (): Promise<void> => new Promise((resolve, reject) => {
    const session = http2.connect(url, options)
    let status = 0
    let failed: Error | undefined
    session.once('error', (err) => { failed ??= err })
    session.once('close', () => { if (failed !== undefined) reject(failed); else if (status === 200) resolve(); else reject(new Error(`status ${status}`)) })
    const req = session.request({ ':path': '/', ':authority': 'web' })
    req.on('response', (h) => { status = Number(h[':status']) })
    req.on('error', (err) => { failed ??= err; session.destroy() })
    req.on('end', () => session.close())
    req.resume()
  })
  const r = await closedLoops(o, one)
  return { ...r.result, clientCpuPct: r.cpuPct }
}

interface SigningOptions {
  /** The control plane's discovery port (TLS, serves POST /v1/certificate). */
  port: number
  ca: string[]
  token: string
  csr: string
  concurrency: number
  warmupMs: number
  durationMs: number
}

export interface SigningResult { rate: number, ok: number, errors: number, firstError?: string, p50: number, p99: number }

/** POST /v1/certificate in N concurrent loops over one TLS h2 connection, the same CSR each time. */
async function signingWorker (o: SigningOptions): Promise<SigningResult> {
  const session = http2.connect(`https://127.0.0.1:${o.port}`, { ca: o.ca, minVersion: 'TLSv1.3', ALPNProtocols: ['h2'] })
  await new Promise<void>((resolve, reject) => { session.once('connect', () => resolve()); session.once('error', reject) })
  const body = JSON.stringify({ csr: o.csr })
  const one = (): Promise<void> => new Promise((resolve, reject) => {
    const req = session.request({ ':method': 'POST', ':path': '/v1/certificate', 'content-type': 'application/json', authorization: `Bearer ${o.token}` })
    let status = 0
    req.on('response', (h) => { status = Number(h[':status']) })
    req.on('error', reject)
    req.on('end', () => { if (status === 200) resolve(); else reject(new Error(`status ${status}`)) })
    req.resume()
    req.end(body)
  })
  const { result } = await closedLoops(o, one)
  session.close()
  return result
}

/**
 * `concurrency` loops calling `one` back to back for warm-up plus duration; latencies and errors
 * count only inside the measured window. Also this thread's CPU over that window, % of one core.
 */
async function closedLoops (o: { concurrency: number, warmupMs: number, durationMs: number }, one: () => Promise<void>): Promise<{ result: SigningResult, cpuPct: number }> {
  const measureFrom = performance.now() + o.warmupMs
  const end = measureFrom + o.durationMs
  let cpu0: NodeJS.CpuUsage | undefined
  let measuredAt = 0
  const latencies: number[] = []
  let errors = 0
  let firstError: string | undefined
  await Promise.all(Array.from({ length: o.concurrency }, async () => {
    for (;;) {
      const t0 = performance.now()
      if (t0 >= end) return
      if (t0 >= measureFrom && cpu0 === undefined) { cpu0 = process.cpuUsage(); measuredAt = t0 }
      try {
        await one()
        const t1 = performance.now()
        if (t0 >= measureFrom && t1 <= end) latencies.push(t1 - t0)
      } catch (err) {
        if (t0 >= measureFrom) errors++
        firstError ??= (err as Error).message
      }
    }
  }))
  const used = process.cpuUsage(cpu0)
  const seconds = (performance.now() - measuredAt) / 1000
  const sorted = Float64Array.from(latencies).sort()
  return {
    result: { rate: Math.round(latencies.length / (o.durationMs / 1000)), ok: latencies.length, errors, ...(firstError === undefined ? {} : { firstError }), p50: percentile(sorted, 50), p99: percentile(sorted, 99) },
    cpuPct: Math.round((used.user + used.system) / 1e6 / seconds * 1000) / 10,
  }
}

// ---------------------------------------------------------------------------------------------
// The bench.

interface Options {
  durationS: number
  warmupS: number
  rounds: number
  connections: number
  rate: number
  handshakeS: number
  handshakeConcurrency: number
  signing: boolean
  src: boolean
  keepTmp: boolean
  /** Which measurements to run (all by default). */
  phases: Set<string>
  /** Write V8 CPU profiles of the sidecars and the control plane here (one folder per case). */
  cpuProf?: string
}

const PHASES = ['throughput', 'fixed', 'handshake', 'signing']

const USAGE = `usage: npm run bench:mtls -- [--duration=10] [--warmup=2] [--rounds=3] [--connections=20] [--rate=1000]
       [--handshake-duration=10] [--handshake-concurrency=16] [--no-signing] [--src] [--keep-tmp]
       [--phases=throughput,fixed,handshake,signing] [--cpu-prof=<dir>]
  --src       run the sidecars and control plane from src/ (type stripping) instead of compiled JS (dist/, as the image runs)
  --phases    run only these measurements (the table leaves the others out)
  --cpu-prof  V8 CPU profiles of the sidecars and the control plane, in <dir>/plaintext and <dir>/mtls
              (summarize one with node bench/prof-top.ts <file>)
`

function parseArgs (argv: string[]): Options {
  const o: Options = { durationS: 10, warmupS: 2, rounds: 3, connections: 20, rate: 1000, handshakeS: 10, handshakeConcurrency: 16, signing: true, src: false, keepTmp: false, phases: new Set(PHASES) }
  eachFlag(argv, () => USAGE, (flag, value) => {
    const num = (): number => parsePositive(flag, value())
    switch (flag) {
      case '--duration': o.durationS = num(); break
      case '--warmup': o.warmupS = num(); break
      case '--rounds': o.rounds = num(); break
      case '--connections': o.connections = num(); break
      case '--rate': o.rate = num(); break
      case '--handshake-duration': o.handshakeS = num(); break
      case '--handshake-concurrency': o.handshakeConcurrency = num(); break
      case '--no-signing': o.signing = false; break
      case '--src': o.src = true; break
      case '--keep-tmp': o.keepTmp = true; break
      case '--phases':
        o.phases = new Set(value().split(','))
        for (const ph of o.phases) if (!PHASES.includes(ph)) throw new Error(`--phases: "${ph}" is none of ${PHASES.join(', ')}`)
        break
      case '--cpu-prof': o.cpuProf = value(); break
      default: return false
    }
    return true
  })
  return o
}

type CaseName = 'plaintext' | 'mtls'

interface Topology {
  clientOutbound: number
  serverInbound: number
  sidecars: Child[]
  control?: Child
  controlPort?: number
  tokens: Record<string, string>
  stop (): Promise<void>
}

interface Usage { sidecars: ProcUsage[], control?: ProcUsage, otherLoadPct: number }

interface RoundResult {
  round: number
  throughput?: LoadResult & Usage
  fixed?: { p50: number, p90: number, p99: number, p999: number, achievedRps: number, errors: number, note?: string } & Usage
  handshake?: HandshakeResult & { server: ProcUsage, otherLoadPct: number }
  signing?: SigningResult & { control: ProcUsage, otherLoadPct: number }
}

let seq = 0

async function startTopology (tmp: string, cli: string, kind: CaseName, appPort: number, caDir: string, cpuProf: string | undefined): Promise<Topology> {
  const prof: Record<string, string> = cpuProf === undefined ? {} : { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --cpu-prof --cpu-prof-dir=${join(cpuProf, kind)}`.trim() }
  const n = ++seq
  const dir = join(tmp, `${kind}-${n}`)
  mkdirSync(dir)
  // The tokens prove each workload's identity to the control plane's CA (mTLS); plaintext has no use for them.
  const tokens = { client: `bench-client-${randomBytes(12).toString('hex')}`, web: `bench-web-${randomBytes(12).toString('hex')}` }
  const mesh = await writePairMesh(join(dir, 'mesh'), appPort, { appProtocol: 'http1', tokens })
  const started: Child[] = []
  try {
    let control: Child | undefined
    let controlPort: number | undefined
    const env: Record<string, string> = {}
    if (kind === 'mtls') {
      controlPort = await freePort()
      const adminPort = await freePort()
      control = startChild(`control-${n}`, process.execPath, [cli, 'control', '--mesh-file', mesh.file, '--ca', `dev:${caDir}`, '--discovery-addr', `127.0.0.1:${controlPort}`, '--admin-addr', `127.0.0.1:${adminPort}`], {
        logFile: join(dir, 'control.log'),
        env: { ...process.env, REMORA_LOG_LEVEL: 'info', ...prof },
      })
      started.push(control)
      await waitForReady(control, adminPort, 30_000)
      env.REMORA_CONTROL_ADDR = `127.0.0.1:${controlPort}`
      env.REMORA_TRUST_ANCHORS = join(caDir, 'root.pem')
    }
    const sidecars = await startSidecars(mesh, ['client', 'web'], (w) => ({
      cli,
      name: `sidecar-${w}-${n}`,
      logFile: join(dir, `sidecar-${w}.log`),
      env: { REMORA_ACCESS_LOG: 'off', REMORA_LOG_LEVEL: 'info', REMORA_SHUTDOWN_GRACE: '1s', ...env, ...prof },
    }), 30_000)
    started.push(...sidecars)
    return {
      clientOutbound: portsOf(mesh, 'client').outbound,
      serverInbound: portsOf(mesh, 'web').inbound,
      sidecars,
      control,
      controlPort,
      tokens,
      stop: async () => { await Promise.all(started.map((c) => stopChild(c, 5000))) },
    }
  } catch (err) {
    await Promise.all(started.map((c) => stopChild(c)))
    throw err
  }
}

const QUIET_PCT = 20

async function quiet (log: (line: string) => void): Promise<void> {
  const pct = await waitForQuiet(QUIET_PCT, 30_000, (p) => log(`    other processes use ${p}% CPU; waiting up to 30 s for a quieter machine…`))
  if (pct >= QUIET_PCT) log(`    still ${pct}% CPU used by other processes; measuring anyway`)
}

async function measure<T> (targets: SampleTarget[], run: () => Promise<T>, window?: { delayMs: number, lengthMs: number }): Promise<{ result: T, usage: ProcUsage[], otherLoadPct: number }> {
  const sampler = new Sampler(targets)
  const foreign = new ForeignLoad()
  let usage: ProcUsage[] | undefined
  let timers: NodeJS.Timeout[] = []
  if (window === undefined) {
    foreign.start()
    sampler.start()
  } else {
    // Sample only the measured part of a run that has its own warm-up.
    timers = [
      setTimeout(() => { foreign.start(); sampler.start() }, window.delayMs),
      setTimeout(() => { usage = sampler.stop() }, window.delayMs + window.lengthMs),
    ]
  }
  try {
    const result = await run()
    usage ??= sampler.stop()
    return { result, usage, otherLoadPct: foreign.stop() }
  } finally {
    for (const t of timers) clearTimeout(t)
  }
}

async function worker<T> (ctx: RunContext, kind: 'handshake' | 'signing', options: HandshakeOptions | SigningOptions, timeoutMs: number): Promise<T> {
  const n = ctx.seq()
  // The options (a private key among them) go through a file, not the command line.
  const file = join(ctx.tmp, `${kind}-${n}.json`)
  writeFileSync(file, JSON.stringify(options), { mode: 0o600 })
  const { output } = await runToEnd(kind, process.execPath, [SELF, `--worker=${kind}`, file], { logFile: join(ctx.tmp, `${kind}-${n}.out`), timeoutMs })
  const line = output.trim().split('\n').filter((l) => l.startsWith('{')).pop()
  if (line === undefined) throw new Error(`${kind} worker failed:\n${output.slice(-2000)}`)
  return JSON.parse(line) as T
}

async function runCase (o: Options, ctx: RunContext, kind: CaseName, topo: Topology, round: number, client: { key: string, cert: string, ca: string[] } | undefined, log: (l: string) => void): Promise<RoundResult> {
  const url = `http://127.0.0.1:${topo.clientOutbound}/`
  const targets: SampleTarget[] = [
    { label: 'client sidecar', pid: topo.sidecars[0].pid },
    { label: 'server sidecar', pid: topo.sidecars[1].pid },
    ...(topo.control === undefined ? [] : [{ label: 'control plane', pid: topo.control.pid }]),
  ]
  const split = (usage: ProcUsage[]): { sidecars: ProcUsage[], control?: ProcUsage } => ({ sidecars: usage.slice(0, 2), ...(usage[2] === undefined ? {} : { control: usage[2] }) })

  const r: RoundResult = { round }
  // Max throughput: wrk (HTTP/1.1 keep-alive, as bench:tracing), after an unmeasured warm-up.
  if (o.phases.has('throughput')) {
    await quiet(log)
    await wrk(ctx, url, 'web', o.connections, o.warmupS)
    const tp = await measure(targets, () => wrk(ctx, url, 'web', o.connections, o.durationS))
    if (tp.result.note !== undefined) log(`    wrk: ${tp.result.note}`)
    r.throughput = { ...tp.result, ...split(tp.usage), otherLoadPct: tp.otherLoadPct }
  }

  // Latency at a moderate fixed rate (the generator's own warm-up is not sampled).
  if (o.phases.has('fixed')) {
    await quiet(log)
    const fr = await measure(targets, () => fixedRate(ctx, { origin: url.slice(0, -1), path: '/', host: 'web', rate: o.rate, warmupMs: o.warmupS * 1000, durationMs: o.durationS * 1000, connections: 16 }),
      { delayMs: o.warmupS * 1000 + 300, lengthMs: o.durationS * 1000 - 300 })
    if (fr.result.note !== undefined) log(`    fixed rate: ${fr.result.note}`)
    r.fixed = { p50: fr.result.p50, p90: fr.result.p90, p99: fr.result.p99, p999: fr.result.p999, achievedRps: fr.result.achievedRps, errors: fr.result.errors, ...(fr.result.note === undefined ? {} : { note: fr.result.note }), ...split(fr.usage), otherLoadPct: fr.otherLoadPct }
  }

  // New connections per second into the server sidecar's inbound port.
  if (o.phases.has('handshake')) {
    await quiet(log)
    const hsOptions: HandshakeOptions = {
      port: topo.serverInbound,
      concurrency: o.handshakeConcurrency,
      warmupMs: 1000,
      durationMs: o.handshakeS * 1000,
      ...(client === undefined ? {} : { tls: { ...client, serverIdentity: identityOf('web') } }),
    }
    const hs = await measure([targets[1]], () => worker<HandshakeResult>(ctx, 'handshake', hsOptions, o.handshakeS * 1000 + 30_000),
      { delayMs: 1000 + 400, lengthMs: o.handshakeS * 1000 - 400 })
    if (hs.result.errors > 0) log(`    handshakes: ${hs.result.errors} failed (${hs.result.firstError})`)
    r.handshake = { ...hs.result, server: hs.usage[0], otherLoadPct: hs.otherLoadPct }
  }

  if (kind === 'mtls' && o.signing && o.phases.has('signing') && topo.control !== undefined && topo.controlPort !== undefined && client !== undefined) {
    await quiet(log)
    const { createCsr, generateWorkloadKey } = await import('../src/identity/keys.ts')
    const csr = await createCsr(await generateWorkloadKey(), identityOf('client'))
    const signSeconds = Math.min(5, o.handshakeS)
    const so: SigningOptions = { port: topo.controlPort, ca: client.ca, token: topo.tokens.client, csr, concurrency: 8, warmupMs: 1000, durationMs: signSeconds * 1000 }
    const sg = await measure([targets[2]], () => worker<SigningResult>(ctx, 'signing', so, signSeconds * 1000 + 30_000),
      { delayMs: 1000 + 400, lengthMs: signSeconds * 1000 - 400 })
    if (sg.result.errors > 0) log(`    signing: ${sg.result.errors} failed (${sg.result.firstError})`)
    r.signing = { ...sg.result, control: sg.usage[0], otherLoadPct: sg.otherLoadPct }
  }
  for (const c of [...topo.sidecars, ...(topo.control === undefined ? [] : [topo.control])]) {
    if (!c.alive) throw new Error(`${c.name} died during the run:\n${c.tail()}`)
  }
  return r
}

/** A client certificate for the mesh, signed by the development CA the control plane uses. */
async function clientCertificate (caDir: string): Promise<{ key: string, cert: string, ca: string[] }> {
  const { CertificateAuthority } = await import('../src/identity/ca.ts')
  const { createCsr, generateWorkloadKey } = await import('../src/identity/keys.ts')
  const read = (f: string): string => readFileSync(join(caDir, f), 'utf8')
  const ca = await CertificateAuthority.load({ rootPem: read('root.pem'), issuerPem: read('issuer.pem'), issuerKeyPem: read('issuer-key.pem'), trustDomain: TRUST_DOMAIN })
  const key = await generateWorkloadKey()
  const identity = identityOf('client')
  const issued = await ca.sign(await createCsr(key, identity), identity)
  return { key: key.privateKeyPem, cert: issued.chainPem.join(''), ca: [...issued.trustAnchorsPem] }
}

const sum = (u: ProcUsage[], f: (p: ProcUsage) => number): number => u.reduce((a, p) => a + f(p), 0)
const ms = (v: number): string => Number.isFinite(v) ? `${v.toFixed(2)}ms` : '?'
const ratio = (a: number, b: number): string => Number.isFinite(a / b) ? (a / b).toFixed(3) : '?'

function bestOf<T> (xs: T[], score: (x: T) => number): T {
  return xs.reduce((best, x) => score(x) > score(best) ? x : best)
}

async function main (): Promise<void> {
  const o = parseArgs(process.argv.slice(2))
  const log = (line: string): void => { process.stderr.write(line + '\n') }
  if (which('wrk') === undefined) { console.log('wrk not installed: apt-get install wrk'); return }
  const tmp = mkdtempSync(join(os.tmpdir(), 'remora-bench-mtls-'))
  installCleanup(() => { if (!o.keepTmp) rmSync(tmp, { recursive: true, force: true }) })
  let cli = join(ROOT, 'src/cli.ts')
  if (!o.src) {
    log('compiling src/ to dist/ (tsconfig.build.json)…')
    cli = buildInPlace(log)
  }
  const ctx: RunContext = { tmp, seq: () => ++seq }
  const app = await startApp(tmp, undefined)
  const caDir = join(tmp, 'ca')
  const started = new Date()
  log(`remora bench:mtls — node ${process.version}, ${os.availableParallelism()} CPUs (${os.cpus()[0]?.model ?? '?'}), load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`)
  log(`${o.rounds} alternating rounds; each: wrk -c${o.connections} ${o.warmupS}s warm-up + ${o.durationS}s; ${o.rate} req/s fixed rate ${o.durationS}s; ${o.handshakeConcurrency} handshake loops ${o.handshakeS}s${o.signing ? '; CA signing 5s' : ''}`)
  const rounds: Record<CaseName, RoundResult[]> = { plaintext: [], mtls: [] }
  let client: { key: string, cert: string, ca: string[] } | undefined
  for (let round = 0; round < o.rounds; round++) {
    for (const kind of ['plaintext', 'mtls'] as const) {
      log(`round ${round + 1}/${o.rounds}: ${kind}`)
      const topo = await startTopology(tmp, cli, kind, app.port, caDir, o.cpuProf)
      try {
        if (kind === 'mtls') client ??= await clientCertificate(caDir)
        const r = await runCase(o, ctx, kind, topo, round, kind === 'mtls' ? client : undefined, log)
        rounds[kind].push(r)
        const t = r.throughput
        log('    ' + [
          t === undefined ? undefined : `${t.rps.toFixed(0)} req/s p50 ${ms(t.p50)} p99 ${ms(t.p99)} CPU ${t.sidecars.map((s) => s.cpuPct).join('/')}% (other load ${t.otherLoadPct}%)`,
          r.fixed === undefined ? undefined : `at ${o.rate}/s p50 ${ms(r.fixed.p50)} p99 ${ms(r.fixed.p99)} (other load ${r.fixed.otherLoadPct}%)`,
          r.handshake === undefined ? undefined : `${r.handshake.rate} conn/s (other load ${r.handshake.otherLoadPct}%)`,
          r.signing === undefined ? undefined : `${r.signing.rate} certs/s`,
        ].filter((x) => x !== undefined).join('; '))
      } finally {
        await topo.stop()
      }
    }
  }
  await stopChild(app.child)

  // Each case's best round per phase (as bench:tracing): the one least slowed by the rest of the machine.
  const best = (k: CaseName) => ({
    throughput: bestOf(rounds[k], (r) => r.throughput?.rps ?? 0).throughput,
    fixed: bestOf(rounds[k], (r) => -(r.fixed?.p50 ?? Infinity)).fixed,
    handshake: bestOf(rounds[k], (r) => r.handshake?.rate ?? 0).handshake,
    signing: bestOf(rounds[k], (r) => r.signing?.rate ?? 0).signing,
  })
  const p = best('plaintext')
  const m = best('mtls')
  const cpu = (u: ProcUsage[]): number => Math.round(sum(u, (x) => x.cpuPct))
  const rss = (u: ProcUsage[]): number => Math.round(sum(u, (x) => x.peakRssMb))
  const lines: string[] = []
  lines.push('', `remora two hops (wrk → client sidecar → server sidecar → app), plaintext vs mTLS, best of ${o.rounds} alternating rounds, ${o.src ? 'src/ (type stripping)' : 'compiled JS'}, access log off`, '')
  if (p.throughput !== undefined && m.throughput !== undefined) {
    const [pt, mt] = [p.throughput, m.throughput]
    lines.push('max throughput (wrk -t1 -c' + o.connections + ', HTTP/1.1)')
    lines.push('case        req/s     p50       p99       sidecar CPU % (client/server)  sidecar RSS MB  other load %')
    for (const [name, t] of [['plaintext', pt], ['mTLS', mt]] as const) {
      lines.push(`${name.padEnd(10)}  ${t.rps.toFixed(0).padStart(7)}  ${ms(t.p50).padEnd(8)}  ${ms(t.p99).padEnd(8)}  ${t.sidecars.map((s) => s.cpuPct.toFixed(0)).join(' / ').padEnd(29)}  ${t.sidecars.map((s) => s.peakRssMb.toFixed(0)).join(' / ').padEnd(14)}  ${t.otherLoadPct}`)
    }
    lines.push(`mTLS/plaintext: req/s ${ratio(mt.rps, pt.rps)}, p50 ${ratio(mt.p50, pt.p50)}, p99 ${ratio(mt.p99, pt.p99)}, sidecar CPU ${ratio(cpu(mt.sidecars), cpu(pt.sidecars))}, CPU per request ${ratio(cpu(mt.sidecars) / mt.rps, cpu(pt.sidecars) / pt.rps)}, RSS ${ratio(rss(mt.sidecars), rss(pt.sidecars))}`, '')
  }
  if (p.fixed !== undefined && m.fixed !== undefined) {
    const [pf, mf] = [p.fixed, m.fixed]
    lines.push(`fixed rate ${o.rate} req/s (HTTP/1.1, 16 connections)`)
    lines.push('case        p50       p90       p99       p99.9     sidecar CPU % (client/server)  sidecar RSS MB  other load %')
    for (const [name, f] of [['plaintext', pf], ['mTLS', mf]] as const) {
      lines.push(`${name.padEnd(10)}  ${ms(f.p50).padEnd(8)}  ${ms(f.p90).padEnd(8)}  ${ms(f.p99).padEnd(8)}  ${ms(f.p999).padEnd(8)}  ${f.sidecars.map((s) => s.cpuPct.toFixed(1)).join(' / ').padEnd(29)}  ${f.sidecars.map((s) => s.peakRssMb.toFixed(0)).join(' / ').padEnd(14)}  ${f.otherLoadPct}`)
    }
    lines.push(`mTLS/plaintext: p50 ${ratio(mf.p50, pf.p50)}, p99 ${ratio(mf.p99, pf.p99)}, sidecar CPU ${ratio(sum(mf.sidecars, (x) => x.cpuPct), sum(pf.sidecars, (x) => x.cpuPct))}, RSS ${ratio(rss(mf.sidecars), rss(pf.sidecars))}`, '')
  }
  if (p.handshake !== undefined && m.handshake !== undefined) {
    const [ph, mh] = [p.handshake, m.handshake]
    lines.push(`new connections into the server sidecar's inbound port (${o.handshakeConcurrency} loops: connect, one h2 request, close; no session resumption)`)
    lines.push('case                 conn/s   p50       p99       server sidecar CPU %  RSS MB  client CPU %  errors')
    for (const [name, h] of [['h2c (plaintext)', ph], ['TLS 1.3 mTLS', mh]] as const) {
      lines.push(`${name.padEnd(19)}  ${String(h.rate).padStart(6)}   ${ms(h.p50).padEnd(8)}  ${ms(h.p99).padEnd(8)}  ${h.server.cpuPct.toFixed(0).padEnd(20)}  ${h.server.peakRssMb.toFixed(0).padEnd(6)}  ${h.clientCpuPct.toFixed(0).padEnd(12)}  ${h.errors}`)
    }
    lines.push(`mTLS/plaintext: conn/s ${ratio(mh.rate, ph.rate)}; server sidecar CPU per connection ${(mh.server.cpuPct * 10 / mh.rate).toFixed(3)} ms vs ${(ph.server.cpuPct * 10 / ph.rate).toFixed(3)} ms`, '')
  }
  if (m.signing !== undefined) {
    const s = m.signing
    lines.push(`control plane CA: ${s.rate} certificates/s (POST /v1/certificate, 8 concurrent over one TLS h2 connection), p50 ${ms(s.p50)} p99 ${ms(s.p99)}, control plane CPU ${s.control.cpuPct.toFixed(0)} %, RSS ${s.control.peakRssMb.toFixed(0)} MB, errors ${s.errors}`)
  }
  console.log(lines.join('\n'))
  const stamp = started.toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-')
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true })
  const file = join(ROOT, 'bench/results', `mtls-${stamp}.json`)
  writeFileSync(file, JSON.stringify({ started: started.toISOString(), node: process.version, cpus: os.availableParallelism(), options: o, best: { plaintext: p, mtls: m }, rounds }, null, 2) + '\n')
  console.log(`\nresults: ${file}`)
  if (!o.keepTmp) rmSync(tmp, { recursive: true, force: true })
  process.exit(0)
}

const workerKind = process.argv.find((a) => a.startsWith('--worker='))?.split('=')[1]
if (workerKind !== undefined) {
  const options = JSON.parse(readFileSync(process.argv[process.argv.length - 1], 'utf8')) as HandshakeOptions & SigningOptions
  // The bench holds no stdin for workers; they end on their own when the time is up.
  const run = workerKind === 'handshake' ? handshakeWorker(options) : signingWorker(options)
  run.then((r) => { process.stdout.write(JSON.stringify(r) + '\n'); process.exit(0) }, (err: unknown) => { process.stderr.write(`${(err as Error).stack ?? String(err)}\n`); process.exit(1) })
} else {
  main().catch((err: unknown) => { process.stderr.write(`bench:mtls failed: ${(err as Error).stack ?? String(err)}\n`); process.exit(1) })
}
