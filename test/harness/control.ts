// Test harness: a real `remora control` child process (file or Kubernetes source) that can be killed and restarted.
import { spawn, type ChildProcess } from 'node:child_process'
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
      env: { ...process.env, REMORA_LOG_LEVEL: 'info', ...this.env },
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

export interface SecureMesh { mesh: Mesh, control: ControlProcess, caDir: string, trustAnchors: string }

/**
 * A whole mTLS mesh: the mesh file, a control plane with a development CA (in a fresh folder) serving it,
 * and one sidecar per workload (or `only`) that gets its certificate from it.
 */
export async function startSecureMesh (t: Teardown, spec: MeshSpec, options: { certTtl?: string, only?: string[], env?: Record<string, string>, controlEnv?: Record<string, string> } = {}): Promise<SecureMesh> {
  const mesh = await writeMesh(spec)
  const caDir = join(dirname(mesh.file), 'ca')
  const control = await startControl(t, ['--mesh-file', mesh.file, '--ca', `dev:${caDir}`, ...(options.certTtl === undefined ? [] : ['--cert-ttl', options.certTtl])], options.controlEnv)
  const trustAnchors = join(caDir, 'root.pem')
  await startSidecars(t, mesh, { only: options.only, env: { REMORA_CONTROL_ADDR: control.address, REMORA_TRUST_ANCHORS: trustAnchors, ...options.env } })
  return { mesh, control, caDir, trustAnchors }
}
