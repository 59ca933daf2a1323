// Bench sidecar pairs: the harness's client → web mesh file (test/harness/mesh.ts) and `remora proxy`
// children that log to files, pinned to CPUs when asked, stopped as process groups (procs.ts).
import { pairSpec, writeMesh, type Mesh, type PairOptions, type SidecarPorts } from '../test/harness/mesh.ts'
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
