// The opaque-TCP cases of `npm run bench`: bulk throughput (tcp-bulk) and first-byte latency of a
// server-speaks-first app (tcp-first-byte), each direct and through two sidecars reached by a CONNECT
// tunnel, with plaintext sidecars (mesh file only) and mTLS ones (a `remora control` with a development
// CA) side by side in one run. The load comes from tcp-client.ts, a child process, interleaving the paths.
import { randomBytes } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { freePort, writeMesh, type AppProtocol, type MeshSpec } from '../test/harness/mesh.ts'
import type { RunContext } from './loadgen.ts'
import { runToEnd, startChild, stopChild, waitForPort, type Child } from './procs.ts'
import { ForeignLoad, Sampler, type ProcUsage } from './sample.ts'
import { portsOf, startControl, startSidecars } from './sidecars.ts'
import { median, percentile } from './stats.ts'
import type { BulkOptions, BulkPathResult, FirstByteOptions, FirstBytePathResult, TcpPath } from './tcp-client.ts'
import type { Env } from './topologies.ts'

const BENCH = new URL('.', import.meta.url).pathname

/** What the TCP cases get from the bench besides the Env. */
export interface TcpRun {
  ctx: RunContext
  log: (line: string) => void
  /** Waits (bounded) for other processes on the machine to calm down. */
  waitQuiet: () => Promise<void>
  /** Bulk: MiB per transfer, measured repetitions per path and direction. */
  bulkMib: number
  bulkReps: number
  /** First byte: measured connections per path. */
  firstByteSamples: number
  /** Measured seconds of each load run (--duration). */
  durationS: number
}

export type TcpPathName = 'direct' | 'plaintext' | 'mtls'

export const TCP_PATH_LABELS: Record<TcpPathName, string> = {
  direct: 'direct (app at 127.0.0.1:port)',
  plaintext: 'remora 2 hops, plaintext',
  mtls: 'remora 2 hops, mTLS',
}

export interface BulkDirectionResult {
  /** Median MB/s (10^6 bytes/s) of the repetitions, and each of them. */
  mbps: number
  runs: number[]
  /** % of one core over the measured transfers: each sidecar, the app, the client. */
  cpuPct: Record<string, number>
}

export interface TcpBulkResult {
  mib: number
  reps: number
  paths: Array<{ name: TcpPathName, label: string, down: BulkDirectionResult, up: BulkDirectionResult }>
  /** Peak RSS of every sidecar over the case. */
  rss: ProcUsage[]
  /** CPU that processes outside the bench used while it ran, % of one core. */
  otherLoadPct: number
}

export interface TcpFirstByteResult {
  samples: number
  /** The service port the tunnels name (in REMORA_OPAQUE_PORTS by default: no detection wait). */
  servicePort: number
  paths: Array<{ name: TcpPathName, label: string, n: number, p50: number, p90: number, p99: number, max: number, mean: number, errors: number, firstError?: string }>
  otherLoadPct: number
}

/** The harness's AppProtocol predates `opaque` (the mesh schema takes it). */
const OPAQUE = 'opaque' as AppProtocol
/** Services the client reaches through CONNECT: `bulk` declared opaque, `greet` on a default opaque port. */
const BULK_SERVICE = { name: 'bulk', port: 7000 }
const GREET_SERVICE = { name: 'greet', port: 3306 }
const NAMESPACE = 'bench'

interface TcpApp { child: Child, bulkPort: number, greetPort: number }

async function startTcpApp (env: Env): Promise<TcpApp> {
  const bulkPort = await freePort()
  const greetPort = await freePort()
  const child = startChild('tcp-app', process.execPath, [join(BENCH, 'tcp-app.ts'), String(bulkPort), String(greetPort)], { cpus: env.pin.app, logFile: join(env.tmp, 'tcp-app.log'), stdinPipe: true })
  await waitForPort(child, bulkPort)
  await waitForPort(child, greetPort)
  return { child, bulkPort, greetPort }
}

interface TcpMesh { kind: 'plaintext' | 'mtls', outbound: number, sidecars: Child[], stop (): Promise<void> }

let seq = 0

/** client + web sidecars in front of the TCP app; mTLS: with a control plane and its development CA. */
async function startTcpMesh (env: Env, kind: 'plaintext' | 'mtls', app: TcpApp, caseId: string): Promise<TcpMesh> {
  const n = ++seq
  const dir = join(env.tmp, `tcp-${kind}-${n}`)
  mkdirSync(dir)
  const token = (w: string): { bootstrapToken: string } => ({ bootstrapToken: `bench-${w}-${randomBytes(12).toString('hex')}` })
  const spec: MeshSpec = {
    workloads: {
      client: { appPorts: [1], namespace: NAMESPACE, ...token('client') },
      // Declared opaque: no HTTP/2 probe of these ports at start-up.
      web: { appPorts: [{ port: app.bulkPort, protocol: OPAQUE }, { port: app.greetPort, protocol: OPAQUE }], namespace: NAMESPACE, ...token('web') },
    },
    services: [
      { ...BULK_SERVICE, namespace: NAMESPACE, protocol: OPAQUE, endpoints: [{ workload: 'web', targetPort: app.bulkPort }] },
      { ...GREET_SERVICE, namespace: NAMESPACE, endpoints: [{ workload: 'web', targetPort: app.greetPort }] },
    ],
  }
  const mesh = await writeMesh(spec, join(dir, 'mesh'))
  const started: Child[] = []
  try {
    const extra: Record<string, string> = {}
    if (kind === 'mtls') {
      const control = await startControl(env.cli, mesh.file, dir, `control-${n}`)
      started.push(control.child)
      Object.assign(extra, control.env)
    }
    const sidecars = await startSidecars(mesh, ['client', 'web'], (w) => ({
      cli: env.cli,
      name: `sidecar-${w}-${kind}-${n}`,
      nodeArgs: env.sidecarNodeArgs(`${n}-${caseId}-${kind}-${w}`),
      cpus: w === 'client' ? env.pin.hop1 : env.pin.hop2,
      logFile: join(dir, `sidecar-${w}.log`),
      env: { REMORA_ACCESS_LOG: 'off', REMORA_LOG_LEVEL: 'info', REMORA_SHUTDOWN_GRACE: '1s', ...extra },
    }), 30_000)
    started.push(...sidecars)
    return { kind, outbound: portsOf(mesh, 'client').outbound, sidecars, stop: async () => { await Promise.all(started.map((c) => stopChild(c, 5000))) } }
  } catch (err) {
    await Promise.all(started.map((c) => stopChild(c)))
    throw err
  }
}

/** The TCP app and both sidecar pairs (started at once), `body`, then everything stopped. */
async function withTopology<T> (env: Env, t: TcpRun, caseId: string, body: (app: TcpApp, meshes: TcpMesh[]) => Promise<T>): Promise<T> {
  const app = await startTcpApp(env)
  const meshes: TcpMesh[] = []
  try {
    t.log(`  starting plaintext and mTLS sidecar pairs (+ control plane)…`)
    const settled = await Promise.allSettled((['plaintext', 'mtls'] as const).map((k) => startTcpMesh(env, k, app, caseId)))
    for (const s of settled) if (s.status === 'fulfilled') meshes.push(s.value)
    const failed = settled.find((s) => s.status === 'rejected')
    if (failed !== undefined) throw failed.reason
    const result = await body(app, meshes)
    for (const m of meshes) for (const c of m.sidecars) if (!c.alive) throw new Error(`${c.name} died during the run:\n${c.tail()}`)
    return result
  } finally {
    await Promise.all(meshes.map((m) => m.stop()))
    await stopChild(app.child)
  }
}

function paths (meshes: TcpMesh[], appPort: number, service: { name: string, port: number }): TcpPath[] {
  return [
    { name: 'direct', port: appPort, procs: [] },
    ...meshes.map((m) => ({
      name: m.kind,
      port: m.outbound,
      connect: `${service.name}:${service.port}`,
      procs: [{ label: 'client sidecar', pid: m.sidecars[0].pid }, { label: 'server sidecar', pid: m.sidecars[1].pid }],
    })),
  ]
}

async function client<T> (t: TcpRun, options: BulkOptions | FirstByteOptions, timeoutMs: number): Promise<T> {
  const n = t.ctx.seq()
  const file = join(t.ctx.tmp, `tcp-${options.mode}-${n}.json`)
  writeFileSync(file, JSON.stringify(options))
  const { code, output } = await runToEnd(`tcp-${options.mode}`, process.execPath, [join(BENCH, 'tcp-client.ts'), file], { cpus: t.ctx.cpus, logFile: join(t.ctx.tmp, `tcp-${options.mode}-${n}.out`), timeoutMs })
  const line = output.trim().split('\n').filter((l) => l.startsWith('[')).pop()
  if (code !== 0 || line === undefined) throw new Error(`tcp-client (${options.mode}) failed (exit ${code}):\n${output.slice(-2000)}`)
  return JSON.parse(line) as T
}

/** Runs the client while watching the rest of the machine and the sidecars' memory. */
async function measuredClient<T> (t: TcpRun, meshes: TcpMesh[], options: BulkOptions | FirstByteOptions, timeoutMs: number): Promise<{ result: T, rss: ProcUsage[], otherLoadPct: number }> {
  await t.waitQuiet()
  const sampler = new Sampler(meshes.flatMap((m) => m.sidecars.map((c, i) => ({ label: `${m.kind} ${i === 0 ? 'client' : 'server'} sidecar`, pid: c.pid }))), 250)
  const foreign = new ForeignLoad()
  foreign.start()
  sampler.start()
  try {
    const result = await client<T>(t, options, timeoutMs)
    return { result, rss: sampler.stop(), otherLoadPct: foreign.stop() }
  } catch (err) {
    sampler.stop()
    throw err
  }
}

export async function runTcpBulk (env: Env, t: TcpRun): Promise<{ tcpBulk: TcpBulkResult }> {
  return withTopology(env, t, 'tcp-bulk', async (app, meshes) => {
    const options: BulkOptions = { mode: 'bulk', paths: paths(meshes, app.bulkPort, BULK_SERVICE), bytes: t.bulkMib * 1024 * 1024, warmups: 1, reps: t.bulkReps, appPid: app.child.pid }
    t.log(`  ${t.bulkMib} MiB per transfer, down and up, ${t.bulkReps} repetitions interleaved over ${options.paths.map((p) => p.name).join(', ')}…`)
    const m = await measuredClient<BulkPathResult[]>(t, meshes, options, 300_000)
    const dir = (d: BulkPathResult['down']): BulkDirectionResult => ({ mbps: Math.round(median(d.mbps) * 10) / 10, runs: d.mbps, cpuPct: d.cpuPct })
    return {
      tcpBulk: {
        mib: t.bulkMib,
        reps: t.bulkReps,
        paths: m.result.map((p) => ({ name: p.name as TcpPathName, label: TCP_PATH_LABELS[p.name as TcpPathName], down: dir(p.down), up: dir(p.up) })),
        rss: m.rss.map((u) => ({ label: u.label, peakRssMb: u.peakRssMb, cpuPct: u.cpuPct })),
        otherLoadPct: m.otherLoadPct,
      },
    }
  })
}

export async function runTcpFirstByte (env: Env, t: TcpRun): Promise<{ tcpFirstByte: TcpFirstByteResult }> {
  return withTopology(env, t, 'tcp-first-byte', async (app, meshes) => {
    const options: FirstByteOptions = { mode: 'first-byte', paths: paths(meshes, app.greetPort, GREET_SERVICE), samples: t.firstByteSamples, warmups: 20 }
    t.log(`  ${t.firstByteSamples} sequential connections per path (CONNECT ${GREET_SERVICE.name}:${GREET_SERVICE.port} through the sidecars), interleaved…`)
    const m = await measuredClient<FirstBytePathResult[]>(t, meshes, options, 300_000)
    const round = (v: number): number => Math.round(v * 1000) / 1000
    return {
      tcpFirstByte: {
        samples: t.firstByteSamples,
        servicePort: GREET_SERVICE.port,
        paths: m.result.map((p) => {
          const sorted = Float64Array.from(p.ms).sort()
          return {
            name: p.name as TcpPathName,
            label: TCP_PATH_LABELS[p.name as TcpPathName],
            n: p.ms.length,
            p50: round(percentile(sorted, 50)),
            p90: round(percentile(sorted, 90)),
            p99: round(percentile(sorted, 99)),
            max: round(sorted[sorted.length - 1] ?? NaN),
            mean: round(p.ms.reduce((a, b) => a + b, 0) / p.ms.length),
            errors: p.errors,
            ...(p.firstError === undefined ? {} : { firstError: p.firstError }),
          }
        }),
        otherLoadPct: m.otherLoadPct,
      },
    }
  })
}
