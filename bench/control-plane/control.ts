// bench:control's subject: the real `remora control` as a child process, reading the fake cluster, pinned and profiled when asked.
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { freePort } from '../../test/harness/mesh.ts'
import { startChild, waitForReady, type Child } from '../procs.ts'
import { now } from './clock.ts'
import type { Options } from './options.ts'

export interface ControlPlane {
  child: Child
  /** The discovery API's address (host:port) and the admin URL. */
  discovery: string
  adminUrl: string
  /** From start to /ready: the first full view of the cluster loaded. */
  readyMs: number
  /** Where its CPU profile goes (--cpu-prof) when it exits, and its log. */
  profile: string
  logFile: string
}

export async function startControlPlane (o: Options, p: { cli: string, kubeconfig: string, cpus: string | undefined, tmp: string, profDir: string }): Promise<ControlPlane> {
  const discoveryPort = await freePort()
  const adminPort = await freePort()
  if (o.cpuProf) mkdirSync(p.profDir, { recursive: true })
  const nodeArgs = [...o.nodeOptions, ...(o.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${p.profDir}`, '--cpu-prof-name=control.cpuprofile'] : [])]
  const discovery = `127.0.0.1:${discoveryPort}`
  const adminUrl = `http://127.0.0.1:${adminPort}`
  const logFile = join(p.tmp, 'control.log')
  const t0 = now()
  const child = startChild('remora control', process.execPath, [...nodeArgs, p.cli, 'control', '--discovery-addr', discovery, '--admin-addr', `127.0.0.1:${adminPort}`], {
    // The simulated sidecars speak plaintext h2c: no CA, whatever the environment says.
    env: { ...process.env, KUBECONFIG: p.kubeconfig, REMORA_SOURCE: 'kubernetes', REMORA_LOG_LEVEL: 'warn', REMORA_CA: 'off' },
    cpus: p.cpus,
    logFile,
  })
  await waitForReady(child, adminPort, 120_000)
  return { child, discovery, adminUrl, readyMs: now() - t0, profile: join(p.profDir, 'control.cpuprofile'), logFile }
}
