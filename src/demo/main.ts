// `remora demo` (npm start): a small mesh on this machine from deploy/local/ — apps, a sidecar for
// each, a little traffic between them — and a clean stop on Ctrl-C.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, openSync, rmSync } from 'node:fs'
import { extname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { tmpdir } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import { parseDuration } from '../parse/duration.ts'
import { readMeshFile, type Workload } from '../config/mesh-file.ts'

const ROOT = new URL('../..', import.meta.url).pathname
// The same entry point this process runs from: src/cli.ts in a checkout, dist/cli.js once built.
const CLI = fileURLToPath(new URL(`../cli${extname(import.meta.url)}`, import.meta.url))
const DEFAULT_MESH = join(ROOT, 'deploy/local/mesh.yaml')
/** The demo's control plane; every sidecar watches its services from here. */
const CONTROL = { discovery: '127.0.0.1:15012', admin: '127.0.0.1:15014' }

/** Which demo app runs as which workload; the client workload is this process's traffic loop. */
const APPS: Record<string, string> = { web: 'deploy/local/apps/web.ts', greeter: 'deploy/local/apps/greeter.ts' }

export function demoUsage (): string {
  return `usage: remora demo [--mesh-file deploy/local/mesh.yaml] [--duration 30s] [--logs DIR]

Starts a control plane serving the mesh file (discovery ${CONTROL.discovery}, admin ${CONTROL.admin}),
every workload of the mesh file with its own sidecar on loopback, sends a request through the
mesh every second, and prints what to try. Ctrl-C stops everything. --duration stops by itself.
`
}

interface Child { readonly name: string, readonly proc: ChildProcess }

export async function runDemo (flags: ReadonlyMap<string, string>): Promise<number> {
  const meshFile = flags.get('--mesh-file') ?? DEFAULT_MESH
  const duration = flags.has('--duration') ? parseDuration(flags.get('--duration') as string) : undefined
  const logs = flags.get('--logs') ?? join(tmpdir(), 'remora-demo')
  mkdirSync(logs, { recursive: true })
  const mesh = readMeshFile(meshFile)
  const workloads = Object.values(mesh.workloads)
  const children: Child[] = []
  const start = (name: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess => {
    const out = openSync(join(logs, `${name}.log`), 'w')
    const proc = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', out, out] })
    children.push({ name, proc })
    proc.once('exit', (code, signal) => {
      if (!stopping) console.log(`demo: ${name} exited (${signal ?? code}); see ${join(logs, `${name}.log`)}`)
    })
    return proc
  }

  let stopping = false
  const stopAll = async (): Promise<void> => {
    stopping = true
    await Promise.all(children.map(({ proc }) => new Promise<void>((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) { resolve(); return }
      const kill = setTimeout(() => proc.kill('SIGKILL'), 10_000)
      proc.once('exit', () => { clearTimeout(kill); resolve() })
      proc.kill('SIGTERM')
    })))
  }

  // A development CA, made fresh for each run: every hop between sidecars is mTLS.
  const caDir = join(logs, `ca-${process.pid}`)
  try {
    start('control', [CLI, 'control', '--mesh-file', meshFile, '--discovery-addr', CONTROL.discovery, '--admin-addr', CONTROL.admin, '--ca', `dev:${caDir}`], { REMORA_LOG_LEVEL: 'info' })
    await waitUrl(`http://${CONTROL.admin}/ready`, 'control plane', children)
    for (const w of workloads) {
      start(`${w.name}-sidecar`, [CLI, 'proxy', '--mesh-file', meshFile, '--workload', w.name], { REMORA_LOG_LEVEL: 'info', REMORA_CONTROL_ADDR: CONTROL.discovery, REMORA_TRUST_ANCHORS: join(caDir, 'root.pem') })
      const app = APPS[w.name]
      if (app !== undefined) {
        start(w.name, [join(ROOT, app)], {
          PORT: String(w.appPorts[0].port),
          // The app's only mesh setting: its outbound traffic goes through its own sidecar.
          grpc_proxy: `http://${addr(w, 'outbound')}`,
          no_grpc_proxy: '',
          no_proxy: '',
        })
      }
    }
    await Promise.all(workloads.map((w) => waitUrl(`http://${addr(w, 'admin')}/ready`, `sidecar of ${w.name}`, children)))
  } catch (err) {
    await stopAll()
    console.error(`demo: ${(err as Error).message}\n  logs: ${logs}`)
    return 1
  }

  const client = mesh.workloads.client ?? workloads[0]
  const via = addr(client, 'outbound')
  console.log(`
remora demo: ${workloads.length} workloads, each with its own sidecar (mesh file ${meshFile})
  control  discovery ${CONTROL.discovery}  admin ${CONTROL.admin}  (serves the mesh file's services and signs each sidecar's certificate)
Every hop between sidecars is mutual TLS; greeter admits only web (see its authorization in the mesh file).
${workloads.map((w) => `  ${w.name.padEnd(8)} app ${String(w.appPorts[0].port).padEnd(6)} sidecar outbound ${addr(w, 'outbound')}  inbound ${addr(w, 'inbound')}  admin ${addr(w, 'admin')}`).join('\n')}

Try (as the "${client.name}" workload, through its sidecar):
  curl -x http://${via} 'http://web.demo/hello?name=you'          # HTTP proxy mode (HTTP_PROXY)
  curl -H 'Host: web' 'http://${via}/hello?name=you'               # Host-header mode
  curl --http2-prior-knowledge -H 'Host: web' 'http://${via}/hello' # h2c from the app
  curl -x http://${via} http://nowhere/                            # what an error looks like
  curl -H 'Host: web' http://${addr(mesh.workloads.web ?? client, 'inbound')}/hello           # plaintext to a strict mTLS port: 403

Admin (each sidecar): /live /ready /metrics, and from loopback /config.json /endpoints.json
  curl http://${addr(client, 'admin')}/endpoints.json      # only what this sidecar's app has called
  curl http://${CONTROL.admin}/catalog.json                # everything the control plane serves
  curl -s http://${addr(client, 'admin')}/metrics | grep remora_requests_total
Logs (one JSON access line per request): ${logs}/<name>.log
Edit ${meshFile} while this runs: the control plane reloads it and pushes the change to the sidecars.
Ctrl-C stops everything.
`)

  let sent = 0
  let ok = 0
  let lastError = ''
  const inFlight = new Set<Promise<void>>()
  const traffic = setInterval(() => {
    sent++
    // Host-header mode, as an app whose traffic iptables redirects would send it (fetch() can't set Host).
    const done: Promise<void> = request(`http://${via}/hello?name=demo-${sent}`, { headers: { host: 'web' } })
      .then(async (res) => {
        const body = await res.body.text()
        if (res.statusCode === 200) ok++
        else lastError = `${res.statusCode} ${String(res.headers['remora-proxy-error'] ?? '')} ${body.split('\n')[0]}`
        if (sent <= 1 || sent % 10 === 0) console.log(`traffic: ${ok}/${sent} ok${lastError !== '' ? `; last error: ${lastError}` : ''}${sent <= 1 ? `  — first answer: ${body.split('\n')[0]}` : ''}`)
      }, (err: Error) => { lastError = err.message })
      .finally(() => inFlight.delete(done))
    inFlight.add(done)
  }, 1000)

  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve())
    process.once('SIGTERM', () => resolve())
    if (duration !== undefined) setTimeout(resolve, duration).unref()
  })
  clearInterval(traffic)
  // The count includes the last request's answer (it may be on its way; the mesh is still up).
  await Promise.race([Promise.allSettled(inFlight), new Promise((resolve) => setTimeout(resolve, 5000).unref())])
  console.log(`\ndemo: stopping (${ok}/${sent} requests ok) …`)
  await stopAll()
  rmSync(caDir, { recursive: true, force: true })
  console.log('demo: stopped')
  return 0
}

function addr (w: Workload, which: 'outbound' | 'inbound' | 'admin'): string {
  const a = w.sidecar[which]
  return a === undefined ? '(default)' : `${a.host}:${a.port}`
}

async function waitUrl (url: string, what: string, children: Child[]): Promise<void> {
  const deadline = Date.now() + 20_000
  while (Date.now() < deadline) {
    const dead = children.find((c) => c.proc.exitCode !== null)
    if (dead !== undefined) throw new Error(`${dead.name} exited during start-up (code ${dead.proc.exitCode}); is another demo still running?`)
    try {
      if ((await fetch(url)).status === 200) return
    } catch { /* not up yet */ }
    await sleep(100)
  }
  throw new Error(`${what} not ready within 20 s`)
}
