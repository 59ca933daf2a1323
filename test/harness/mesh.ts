// Test harness: writes a mesh file, starts real `remora proxy` child processes, waits for /ready,
// and tears everything down. Every test that crosses sidecars builds on this.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { stringify } from 'yaml'
import type { RawInboundPolicy, RawServicePolicy } from '../../src/resilience/policy-file.ts'
import { askReady, assertRunning, START_TIMEOUT_MS, waitForReady, type ReadyAnswer } from './ready.ts'
import { IMAGE_NODE_FLAGS } from '../../scripts/bundle.ts'

export const ROOT = new URL('../..', import.meta.url).pathname
export const CLI = join(ROOT, 'src/cli.ts')

/**
 * Ports handed out below the kernel's ephemeral range (Linux: ip_local_port_range), so the local
 * end of some outgoing connection cannot take one between freePort() and the bind; under load
 * (thousands of connections, two test files at once) port 0's picks did collide. Each tap job
 * (TAP_JOB_ID of TAP_JOBS running at once) gets its own slice above 20000 (below it sit the demo's
 * fixed ports) and walks it in order, so neither two test files nor one file's own unbound picks
 * can be handed the same port.
 */
const JOBS = Math.max(1, Number(process.env.TAP_JOBS ?? 1))
const JOB = Number(process.env.TAP_JOB_ID ?? 0) % JOBS
let nextPort = Math.floor(Math.random() * 1_000_000)

function candidatePort (): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0])
    const span = Math.floor((low - 20_000) / JOBS)
    if (span >= 500) return 20_000 + JOB * span + (nextPort++ % span)
  } catch { /* not Linux: let the kernel choose */ }
  return 0
}

function tryListen (port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const s = net.createServer()
    s.unref()
    s.once('error', () => resolve(undefined))
    s.listen(port, '127.0.0.1', () => {
      const got = (s.address() as net.AddressInfo).port
      s.close(() => resolve(got))
    })
  })
}

/** A port nothing listens on right now; fine for tests that bind it right away. */
export async function freePort (): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const port = await tryListen(candidatePort())
    if (port !== undefined) return port
  }
  const port = await tryListen(0)
  if (port === undefined) throw new Error('no free port')
  return port
}

export type AppProtocol = 'auto' | 'http1' | 'http2' | 'grpc'

export interface WorkloadSpec {
  appPorts: Array<number | { port: number, protocol: AppProtocol }>
  namespace?: string
  /** Inbound protection of the app (docs/mesh-file.md, "Resilience policy"); written as is. */
  inbound?: RawInboundPolicy
  serviceAccount?: string
  /** Written as is; every workload gets one anyway (the control plane's CA needs it when mTLS is on). */
  bootstrapToken?: string
  authorization?: { default?: 'all-authenticated' | 'all-unauthenticated' | 'deny', allow?: Record<string, string[]> }
}

/** A service with its optional policy keys (balancer, timeout, retry, …), written as is. */
export interface ServiceSpec extends RawServicePolicy {
  name: string
  port: number
  namespace?: string
  protocol?: AppProtocol
  endpoints: Array<{ workload: string, targetPort: number, weight?: number } | { address: string, targetPort: number }>
}

export interface MeshSpec {
  workloads: Record<string, WorkloadSpec>
  services: ServiceSpec[]
}

export interface PairOptions {
  /** Both workloads' and the service's namespace (default: the harness's `test`). */
  namespace?: string
  /** How `web`'s sidecar speaks to the app (default: unset, i.e. auto). */
  appProtocol?: AppProtocol
  /** Each workload's bootstrapToken (default: the harness's, one a workload). */
  tokens?: { client: string, web: string }
}

/**
 * The pair that tests and benches cross: `client`, whose outbound listener the caller sends to
 * (Host `web`; it serves nothing, its app port is never dialled), and `web`, the sidecar in front
 * of the app on `appPort`, reached as service `web:80`.
 */
export function pairSpec (appPort: number, options: PairOptions = {}): MeshSpec {
  const { namespace, appProtocol, tokens } = options
  // Keys left out rather than undefined: Mesh.write's defaults apply only to absent keys.
  const ns = namespace === undefined ? {} : { namespace }
  const token = (w: 'client' | 'web'): { bootstrapToken?: string } => tokens === undefined ? {} : { bootstrapToken: tokens[w] }
  return {
    workloads: {
      client: { appPorts: [1], ...ns, ...token('client') },
      web: { appPorts: [appProtocol === undefined ? appPort : { port: appPort, protocol: appProtocol }], ...ns, ...token('web') },
    },
    services: [{ name: 'web', port: 80, ...ns, endpoints: [{ workload: 'web', targetPort: appPort }] }],
  }
}

export interface SidecarPorts { outbound: number, inbound: number, admin: number }

/** Minimal tap surface we need, so the harness works with any tap Test object. */
export interface Teardown { teardown (fn: () => unknown): void }

export class SidecarProcess {
  readonly name: string
  readonly ports: SidecarPorts
  readonly #args: string[]
  readonly #env: NodeJS.ProcessEnv
  proc!: ChildProcess
  output = ''

  constructor (name: string, ports: SidecarPorts, args: string[], env: NodeJS.ProcessEnv) {
    this.name = name
    this.ports = ports
    this.#args = args
    this.#env = env
  }

  /** `http://127.0.0.1:<outbound>`: what an app sets as HTTP_PROXY. */
  get proxyUrl (): string { return `http://127.0.0.1:${this.ports.outbound}` }
  get adminUrl (): string { return `http://127.0.0.1:${this.ports.admin}` }

  async start (readyTimeoutMs = START_TIMEOUT_MS): Promise<void> {
    this.#spawn()
    await this.waitReady(readyTimeoutMs)
  }

  #spawn (): void {
    this.output = ''
    // With the image's V8 flags, as every pod runs it (memory figures in tests then mean the same).
    this.proc = spawn(process.execPath, [...IMAGE_NODE_FLAGS, CLI, 'proxy', ...this.#args], { env: this.#env, stdio: ['ignore', 'pipe', 'pipe'] })
    this.proc.stdout?.on('data', (c: Buffer) => { this.output += c.toString() })
    this.proc.stderr?.on('data', (c: Buffer) => { this.output += c.toString() })
  }

  /**
   * Starts a sidecar that should stay not ready: waits (up to START_TIMEOUT_MS) for its admin port to answer,
   * then requires /ready to stay non-200 for `forMs`. Returns /ready's last answer (its reason).
   */
  async startNotReady (forMs: number): Promise<ReadyAnswer> {
    this.#spawn()
    const ready = async (): Promise<ReadyAnswer | undefined> => {
      assertRunning(`sidecar ${this.name}`, this.proc, () => this.output)
      const answer = await askReady(this.adminUrl)
      return 'error' in answer ? undefined : answer
    }
    let last: ReadyAnswer | undefined
    await eventually(async () => (last = await ready()) !== undefined, START_TIMEOUT_MS, `sidecar ${this.name}'s admin port answers`)
    const until = Date.now() + forMs
    while (Date.now() < until) {
      await sleep(50)
      last = await ready() ?? last
      if (last?.status === 200) throw new Error(`sidecar ${this.name} became ready:\n${this.output}`)
    }
    return last as ReadyAnswer
  }

  async waitReady (timeoutMs = START_TIMEOUT_MS): Promise<void> {
    await waitForReady(`sidecar ${this.name}`, this.adminUrl, this.proc, () => this.output, timeoutMs)
  }

  /** Sends a signal and waits for the process to exit; resolves with its exit code. */
  async stop (signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    return stopProcess(this.proc, signal)
  }

  /** Parsed JSON log lines (pino) printed so far. */
  logs (): Array<Record<string, unknown>> {
    return this.output.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>)
  }

  /**
   * Empty while it runs; else how it ended and its last output but access-log lines: a sidecar that
   * died without a fatal line (a native crash, the OOM killer) says why only there.
   */
  deathReport (): string {
    if (this.proc.exitCode === null && this.proc.signalCode === null) return ''
    const lines = this.output.split('\n').filter((l) => !l.includes('"access":'))
    return `sidecar ${this.name} exited (code ${this.proc.exitCode}, signal ${this.proc.signalCode}); its last output:\n${lines.join('\n').slice(-4000)}`
  }
}

export class Mesh {
  readonly file: string
  readonly sidecars = new Map<string, SidecarProcess>()
  readonly ports = new Map<string, SidecarPorts>()
  #spec: MeshSpec

  constructor (file: string, spec: MeshSpec) {
    this.file = file
    this.#spec = spec
  }

  get workloads (): string[] { return Object.keys(this.#spec.workloads) }

  sidecar (name: string): SidecarProcess {
    const s = this.sidecars.get(name)
    if (s === undefined) throw new Error(`no sidecar for workload ${name}`)
    return s
  }

  /** Rewrites the mesh file (sidecars reload it); unknown sidecar ports are allocated here. */
  async write (spec: MeshSpec = this.#spec): Promise<void> {
    this.#spec = spec
    const workloads: Record<string, unknown> = {}
    for (const [name, w] of Object.entries(spec.workloads)) {
      let ports = this.ports.get(name)
      if (ports === undefined) {
        ports = { outbound: await freePort(), inbound: await freePort(), admin: await freePort() }
        this.ports.set(name, ports)
      }
      workloads[name] = {
        namespace: w.namespace ?? 'test',
        appPorts: w.appPorts,
        sidecar: {
          outbound: `127.0.0.1:${ports.outbound}`,
          inbound: `127.0.0.1:${ports.inbound}`,
          admin: `127.0.0.1:${ports.admin}`,
        },
        ...(w.inbound === undefined ? {} : { inbound: w.inbound }),
        ...(w.serviceAccount === undefined ? {} : { serviceAccount: w.serviceAccount }),
        ...(w.authorization === undefined ? {} : { authorization: w.authorization }),
        bootstrapToken: w.bootstrapToken ?? `token-${name}-0123456789abcdef`,
      }
    }
    const services = spec.services.map((s) => ({ namespace: 'test', ...s }))
    const tmp = `${this.file}.tmp`
    writeFileSync(tmp, stringify({ workloads, services }))
    renameSync(tmp, this.file)
  }
}

export interface StartOptions {
  /** Extra environment for every sidecar (e.g. REMORA_SHUTDOWN_GRACE). */
  env?: Record<string, string>
  /** Start sidecars only for these workloads (default: all). */
  only?: string[]
}

/** Writes the mesh file and starts one sidecar per workload; all stopped at teardown. */
export async function startMesh (t: Teardown, spec: MeshSpec, options: StartOptions = {}): Promise<Mesh> {
  const mesh = await writeMesh(spec)
  await startSidecars(t, mesh, options)
  return mesh
}

/**
 * Writes the mesh file in `dir` (by default a fresh temporary folder), allocating every workload's
 * sidecar ports; starts nothing. Sidecars watch the file's folder: give it one of its own.
 */
export async function writeMesh (spec: MeshSpec, dir = mkdtempSync(join(tmpdir(), 'remora-test-'))): Promise<Mesh> {
  mkdirSync(dir, { recursive: true })
  const mesh = new Mesh(join(dir, 'mesh.yaml'), spec)
  await mesh.write()
  return mesh
}

/** Starts one sidecar per workload of a written mesh (or `options.only`); all stopped at teardown. */
export async function startSidecars (t: Teardown, mesh: Mesh, options: StartOptions = {}): Promise<void> {
  t.teardown(async () => {
    await Promise.all([...mesh.sidecars.values()].map((s) => s.stop('SIGKILL')))
  })
  await Promise.all((options.only ?? mesh.workloads).map(async (name) => {
    const env = { ...process.env, REMORA_LOG_LEVEL: 'info', REMORA_SHUTDOWN_GRACE: '5s', ...options.env }
    const s = new SidecarProcess(name, mesh.ports.get(name) as SidecarPorts, ['--mesh-file', mesh.file, '--workload', name], env)
    mesh.sidecars.set(name, s)
    await s.start()
  }))
}

/**
 * Signals a child process and resolves with its exit code once it has exited; at once when it has
 * already exited, or was never started (a teardown registered before a start that failed).
 */
export async function stopProcess (proc: ChildProcess | undefined, signal: NodeJS.Signals): Promise<number | null> {
  if (proc === undefined) return null
  if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
  proc.kill(signal)
  return exited
}

/** Waits until `check` passes or the time is up; for eventually-consistent state (reloads). */
export async function eventually (check: () => Promise<boolean> | boolean, timeoutMs = 5_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    await sleep(25)
  }
  throw new Error(`${what} not met within ${timeoutMs} ms`)
}
