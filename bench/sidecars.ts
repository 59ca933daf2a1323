// Bench sidecar pairs: the harness's client → web mesh file (test/harness/mesh.ts) and `remora proxy`
// children that log to files, pinned to CPUs when asked, stopped as process groups (procs.ts).
import { mkdirSync } from 'node:fs'
import http from 'node:http'
import { join } from 'node:path'
import { freePort, pairSpec, writeMesh, type Mesh, type PairOptions, type SidecarPorts } from '../test/harness/mesh.ts'
import { startChild, stopChild, waitForReady, type Child } from './procs.ts'

export type Workload = 'client' | 'web'

/** How one sidecar of a bench runs. */
export interface SidecarLaunch {
  /** remora's entry point: src/cli.ts (type stripping), or a compiled dist/cli.js. */
  cli: string
  /** The child's name in error messages. */
  name: string
  logFile: string
  /** Set over the bench's own environment. */
  env: Record<string, string>
  /** taskset CPU list; undefined = not pinned. */
  cpus?: string
  /** Node flags before the entry point (--cpu-prof, …). */
  nodeArgs?: string[]
}

/**
 * The pair's mesh file (namespace `bench`), alone in the folder `dir`: the sidecars watch the file's
 * folder, and logs written beside it (access log on) would wake that watcher on every write.
 */
export async function writePairMesh (dir: string, appPort: number, options: PairOptions = {}): Promise<Mesh> {
  return writeMesh(pairSpec(appPort, { namespace: 'bench', ...options }), dir)
}

export function portsOf (mesh: Mesh, workload: Workload): SidecarPorts {
  const ports = mesh.ports.get(workload)
  if (ports === undefined) throw new Error(`no workload ${workload} in ${mesh.file}`)
  return ports
}

/**
 * Starts these workloads' sidecars at once and waits until each answers /ready; when one does not,
 * stops them all and throws. In the order of `workloads`.
 */
export async function startSidecars (mesh: Mesh, workloads: readonly Workload[], launch: (workload: Workload) => SidecarLaunch, readyTimeoutMs?: number): Promise<Child[]> {
  const children = workloads.map((w) => {
    const l = launch(w)
    return startChild(l.name, process.execPath, [...(l.nodeArgs ?? []), l.cli, 'proxy', '--mesh-file', mesh.file, '--workload', w], {
      cpus: l.cpus,
      logFile: l.logFile,
      env: { ...process.env, ...l.env },
    })
  })
  try {
    await Promise.all(children.map((c, i) => waitForReady(c, portsOf(mesh, workloads[i]).admin, readyTimeoutMs)))
  } catch (err) {
    await Promise.all(children.map((c) => stopChild(c)))
    throw err
  }
  return children
}

/**
 * A `remora control` for a mesh file with a development CA in `dir`/ca, as `bench:mtls` runs it; the
 * environment that makes a sidecar use it (mTLS with certificates it signs).
 */
export async function startControl (cli: string, meshFile: string, dir: string, name: string): Promise<{ child: Child, env: Record<string, string> }> {
  const controlPort = await freePort()
  const adminPort = await freePort()
  const caDir = join(dir, 'ca')
  mkdirSync(dir, { recursive: true })
  const child = startChild(name, process.execPath, [cli, 'control', '--mesh-file', meshFile, '--ca', `dev:${caDir}`, '--discovery-addr', `127.0.0.1:${controlPort}`, '--admin-addr', `127.0.0.1:${adminPort}`], {
    logFile: join(dir, 'control.log'),
    env: { ...process.env, REMORA_LOG_LEVEL: 'info' },
  })
  try {
    await waitForReady(child, adminPort, 30_000)
  } catch (err) {
    await stopChild(child)
    throw err
  }
  return { child, env: { REMORA_CONTROL_ADDR: `127.0.0.1:${controlPort}`, REMORA_TRUST_ANCHORS: join(caDir, 'root.pem') } }
}

/**
 * An OTLP/HTTP endpoint that takes every export and answers at once: the sidecars' cost is
 * measured, not a collector's. `batches`: the non-empty exports so far. It never holds the bench open.
 */
export async function otlpSink (): Promise<{ url: string, batches: () => number, close: () => void }> {
  const port = await freePort()
  let batches = 0
  const server = http.createServer((req, res) => {
    let n = 0
    req.on('data', (c: Buffer) => { n += c.length })
    req.on('end', () => { batches += n > 0 ? 1 : 0; res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end() })
  })
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  server.unref()
  return { url: `http://127.0.0.1:${port}`, batches: () => batches, close: () => { server.closeAllConnections(); server.close() } }
}
