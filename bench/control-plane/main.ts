// bench:control's run from start to end: pin the CPUs, build the cluster, start the control plane
// and the simulation workers, run the scenario, report, clean up.
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { bundle } from '../../scripts/bundle.ts'
import { installCleanup, stopChild, which } from '../procs.ts'
import { startClock } from './clock.ts'
import { assignWatches, rng, startCluster } from './cluster.ts'
import { startControlPlane } from './control.ts'
import { parseArgs } from './options.ts'
import { phaseMeter } from './phases.ts'
import { profileText } from './profile.ts'
import { buildReport, failed, format } from './report.ts'
import { runScenario } from './scenario.ts'
import { SimWorker } from './workers.ts'

const ROOT = new URL('../..', import.meta.url).pathname

/** The bench's temp dir, removed on every way out unless --keep-tmp. */
let tmpToRemove: string | undefined

/** After a failure: the temp dir goes unless --keep-tmp. */
export function removeTmp (): void {
  if (tmpToRemove !== undefined) rmSync(tmpToRemove, { recursive: true, force: true })
}

export async function main (argv: string[]): Promise<void> {
  const o = parseArgs(argv)
  startClock()
  const log = (line: string): void => { process.stderr.write(`${line}\n`) }
  const workers: SimWorker[] = []
  installCleanup(() => {
    for (const w of workers) w.proc.kill('SIGKILL')
    removeTmp()
  })
  process.on('exit', () => { for (const w of workers) w.proc.kill('SIGKILL') })

  const cpus = os.availableParallelism()
  const pin = o.pin && cpus >= 2 && which('taskset') !== undefined
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

  let cli = join(ROOT, 'src/cli.ts')
  if (!o.src) {
    log('building remora as the image ships it (the esbuild bundle, npm run build)…')
    await bundle({ out: join(tmp, 'layer'), layer: true })
    cli = join(tmp, 'layer/dist/cli.js')
  }

  const { api, services, kubeconfig } = await startCluster(o, tmp, log)
  const pick = rng(o.seed)
  const { specs, watchersOf } = assignWatches(o, services, pick)

  const control = await startControlPlane(o, { cli, kubeconfig, cpus: pin ? '1' : undefined, tmp, profDir: join(resultsDir, `prof-control-${stamp}`) })
  log(`control plane ready in ${Math.round(control.readyMs)} ms (pid ${control.child.pid}, discovery ${control.discovery}, admin ${control.adminUrl}${o.src ? ', type stripping' : ', the bundle'})`)

  for (let i = 0; i < o.workers; i++) workers.push(new SimWorker(i, pin ? '0' : undefined))
  await Promise.all(workers.map((w) => w.ready))

  const measure = await phaseMeter(control.child, control.adminUrl, workers)
  const run = await runScenario({ o, log, api, services, specs, watchersOf, pick, workers, discovery: control.discovery, measure })

  await Promise.all(workers.map((w) => w.call({ cmd: 'close' })))
  for (const w of workers) w.proc.disconnect()
  await stopChild(control.child, 15_000)
  await api.close()

  const report = buildReport({ o, layout, readyMs: control.readyMs }, run)
  const file = join(resultsDir, `control-${stamp}.json`)
  writeFileSync(file, JSON.stringify(report, null, 2) + '\n')
  process.stdout.write(format(report, o) + `\nresults: ${file}\n`)
  if (o.cpuProf) process.stdout.write(profileText(control.profile, report.phases, control.logFile))
  if (!o.keepTmp) rmSync(tmp, { recursive: true, force: true })
  else process.stdout.write(`temp dir kept: ${tmp}\n`)
  process.exitCode = failed(report) ? 1 : 0
}
