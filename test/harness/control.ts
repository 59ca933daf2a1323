// Test harness: a real `remora control` child process (file or Kubernetes source) that can be killed and restarted.
import { spawn, type ChildProcess } from 'node:child_process'
import net from 'node:net'
import { dirname, join } from 'node:path'
import { CLI, freePort, startSidecars, stopProcess, writeMesh, type Mesh, type MeshSpec, type Teardown } from './mesh.ts'
import { waitForReady } from './ready.ts'

export class ControlProcess {
  readonly args: string[]
  readonly env: NodeJS.ProcessEnv
  discoveryPort = 0
  adminPort = 0
  proc!: ChildProcess
  output = ''

  constructor (args: string[], env: NodeJS.ProcessEnv = {}) {
    this.args = args
    this.env = env
  }

  get address (): string { return `127.0.0.1:${this.discoveryPort}` }
  get adminUrl (): string { return `http://127.0.0.1:${this.adminPort}` }

  /** Starts (or restarts, on the same ports) and waits for /ready: the first full view is loaded. */
  async start (): Promise<void> {
    if (this.discoveryPort === 0) this.discoveryPort = await freePort()
    if (this.adminPort === 0) this.adminPort = await freePort()
    this.output = ''
    this.proc = spawn(process.execPath, [CLI, 'control', '--discovery-addr', this.address, '--admin-addr', `127.0.0.1:${this.adminPort}`, ...this.args], {
      // The admission webhook (Kubernetes source with a CA) on a port of its own, not 15017: tests run side by side.
      env: { ...process.env, REMORA_LOG_LEVEL: 'info', REMORA_INJECTOR_ADDR: '127.0.0.1:0', ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    this.proc.stdout?.on('data', (c: Buffer) => { this.output += c.toString() })
    this.proc.stderr?.on('data', (c: Buffer) => { this.output += c.toString() })
    await waitForReady('remora control', this.adminUrl, this.proc, () => this.output)
  }

  async stop (signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    return stopProcess(this.proc, signal)
  }
}

export async function startControl (t: Teardown, args: string[], env: NodeJS.ProcessEnv = {}): Promise<ControlProcess> {
  const c = new ControlProcess(args, env)
  t.teardown(() => c.stop('SIGKILL'))
  await c.start()
  return c
}

/**
 * A TCP front for control planes, on a port of its own: sidecars are given its address, and a test
 * takes "the control plane" away and brings it back by closing and reopening it. Down, a connection
 * to it is refused and every connection it carried is cut, as when the control plane's process dies;
 * up again, it forwards to the control plane the test names, which it has started beforehand. So a
 * test can put a control plane back at a moment of its choosing: starting a process is mostly CPU
 * (module loading), and on a busy machine a control plane took 13 s to start.
 */
export class ControlFront {
  readonly port: number
  #target: string
  #server: net.Server | undefined
  readonly #sockets = new Set<net.Socket>()

  constructor (port: number, target: string) {
    this.port = port
    this.#target = target
  }

  get address (): string { return `127.0.0.1:${this.port}` }
  get isUp (): boolean { return this.#server !== undefined }

  /** Listens (again, on the same port), forwarding each new connection to `target` (host:port). */
  async up (target = this.#target): Promise<void> {
    if (this.#server !== undefined) throw new Error('the control front is already up')
    this.#target = target
    const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))]
    const server = net.createServer((inbound) => {
      const outbound = net.connect(port, host)
      for (const [a, b] of [[inbound, outbound], [outbound, inbound]]) {
        this.#sockets.add(a)
        a.on('error', () => b.destroy())
        a.on('close', () => { this.#sockets.delete(a); b.destroy() })
        a.pipe(b)
      }
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.port, '127.0.0.1', () => { server.off('error', reject); resolve() })
    })
    this.#server = server
  }

  /** Stops listening and cuts every connection it carried. */
  async down (): Promise<void> {
    const server = this.#server
    if (server === undefined) return
    this.#server = undefined
    const closed = new Promise((resolve) => server.close(resolve))
    for (const s of this.#sockets) s.destroy()
    await closed
  }
}

export interface SecureMesh { mesh: Mesh, control: ControlProcess, caDir: string, trustAnchors: string }

export interface SecureMeshOptions {
  certTtl?: string
  only?: string[]
  env?: Record<string, string>
  controlEnv?: Record<string, string>
}

function controlArgs (mesh: Mesh, caDir: string, options: SecureMeshOptions): string[] {
  return ['--mesh-file', mesh.file, '--ca', `dev:${caDir}`, ...(options.certTtl === undefined ? [] : ['--cert-ttl', options.certTtl])]
}

/**
 * A whole mTLS mesh: the mesh file, a control plane with a development CA (in a fresh folder) serving it,
 * and one sidecar per workload (or `only`) that gets its certificate from it.
 */
export async function startSecureMesh (t: Teardown, spec: MeshSpec, options: SecureMeshOptions = {}): Promise<SecureMesh> {
  const mesh = await writeMesh(spec)
  const caDir = join(dirname(mesh.file), 'ca')
  const control = await startControl(t, controlArgs(mesh, caDir, options), options.controlEnv)
  const trustAnchors = join(caDir, 'root.pem')
  await startSidecars(t, mesh, { only: options.only, env: { REMORA_CONTROL_ADDR: control.address, REMORA_TRUST_ANCHORS: trustAnchors, ...options.env } })
  return { mesh, control, caDir, trustAnchors }
}

export interface SecureMeshWithStandby extends SecureMesh {
  /** What the sidecars were given as the control plane's address: a front forwarding to `control`. */
  front: ControlFront
  /** A second control plane like `control` (same CA, mesh file and flags, ports of its own), ready, that no sidecar knows of yet. */
  standby: ControlProcess
}

/**
 * startSecureMesh, with the sidecars reaching the control plane through a ControlFront, and a standby
 * control plane started beside the first (before any sidecar, so before any certificate is issued):
 * `front.down()` plus killing `control` is the control plane dying, `front.up(standby.address)` its
 * restart, at once.
 */
export async function startSecureMeshWithStandby (t: Teardown, spec: MeshSpec, options: SecureMeshOptions = {}): Promise<SecureMeshWithStandby> {
  const mesh = await writeMesh(spec)
  const caDir = join(dirname(mesh.file), 'ca')
  // The first creates the development CA; the standby loads it.
  const control = await startControl(t, controlArgs(mesh, caDir, options), options.controlEnv)
  const standby = await startControl(t, controlArgs(mesh, caDir, options), options.controlEnv)
  const front = new ControlFront(await freePort(), control.address)
  t.teardown(() => front.down())
  await front.up()
  const trustAnchors = join(caDir, 'root.pem')
  await startSidecars(t, mesh, { only: options.only, env: { REMORA_CONTROL_ADDR: front.address, REMORA_TRUST_ANCHORS: trustAnchors, ...options.env } })
  return { mesh, control, caDir, trustAnchors, front, standby }
}
