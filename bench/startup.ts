// The startup case of `npm run bench` (issue 19): what every pod pays before its first request.
// The sidecar as the image runs it (the esbuild bundle, a layer built into the run's temp dir) is
// spawned repeatedly: in local mode (plaintext, a mesh file) and as in a pod (no mesh file: the
// table from a local `remora control`, mTLS with a key, a CSR and the certificate it signs, proved by
// a token file); each run times spawn → /ready 200 and reads the idle RSS 5 s later.
// A bare Node HTTP/2 + TLS server, spawned the same way in the same run, is the RSS baseline.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { bundle, IMAGE_NODE_FLAGS } from '../scripts/bundle.ts'
import { freePort } from '../test/harness/mesh.ts'
import { startChild, stopChild, waitForReady, type Child } from './procs.ts'
import { portsOf, writePairMesh } from './sidecars.ts'
import type { Env } from './topologies.ts'

export interface StartupSeries {
  /** spawn → /ready answering 200, ms, one per run. */
  readyMs: number[]
  /** Resident set 5 s after ready, MB (MiB), one per run. */
  idleRssMb: number[]
}

export interface StartupResult {
  runs: number
  plaintext: StartupSeries
  mtls: StartupSeries
  /** A bare Node 24 HTTP/2 + TLS server's idle RSS, MB, one per run. */
  bareRssMb: number[]
  /** Bytes of JavaScript the sidecar loads at start (the bundle's proxy role). */
  loadsBytes: number
}

/**
 * Idle means quiet for a while: a sidecar gives its start-up memory back after 1 s without a
 * request (src/proxy/idle-compaction.ts), so RSS is read well after that, not while it is still settling.
 */
const IDLE_SETTLE_MS = 5_000

const BARE = `
import http2 from 'node:http2'
import { readFileSync } from 'node:fs'
const [cert, key, port] = process.argv.slice(2)
http2.createSecureServer({ cert: readFileSync(cert), key: readFileSync(key) }, (req, res) => res.end('ok')).listen(Number(port), '127.0.0.1')
`

export function median (xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? Number.NaN : s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

function rssMb (child: Child): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))
  return m === null ? Number.NaN : Number(m[1]) / 1024
}

/** Polls /ready every 2 ms: the figure is the wait, so the poll must not add much to it. */
async function readyAfter (adminPort: number, child: Child, startedAt: number): Promise<number> {
  const deadline = startedAt + 30_000
  while (performance.now() < deadline) {
    if (!child.alive) throw new Error(`${child.name} exited before it was ready: ${child.tail(500)}`)
    try {
      const res = await fetch(`http://127.0.0.1:${adminPort}/ready`)
      await res.arrayBuffer()
      if (res.status === 200) return performance.now() - startedAt
    } catch { /* not listening yet */ }
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
  throw new Error(`${child.name} not ready within 30 s`)
}

export async function runStartup (env: Env, runs = 5, log: (line: string) => void = () => {}): Promise<StartupResult> {
  const dir = join(env.tmp, 'startup')
  mkdirSync(dir, { recursive: true })
  log('    building the sidecar as the image ships it (esbuild bundle)…')
  const layer = join(dir, 'layer')
  const built = await bundle({ out: layer, layer: true })
  const cli = join(layer, 'dist/cli.js')
  const caDir = join(dir, 'ca')
  const tokens = { client: 'bench-startup-client-token-0123456789', web: 'bench-startup-web-token-0123456789' }
  const mesh = await writePairMesh(join(dir, 'mesh'), env.appPort, { appProtocol: 'http1', tokens })
  const controlPort = await freePort()
  const controlAdmin = await freePort()
  const control = startChild('startup-control', process.execPath, [cli, 'control', '--mesh-file', mesh.file, '--ca', `dev:${caDir}`, '--discovery-addr', `127.0.0.1:${controlPort}`, '--admin-addr', `127.0.0.1:${controlAdmin}`], {
    logFile: join(dir, 'control.log'),
    env: { ...process.env, REMORA_LOG_LEVEL: 'warn' },
  })
  const bareFile = join(dir, 'bare.mjs')
  writeFileSync(bareFile, BARE)
  const result: StartupResult = { runs, plaintext: { readyMs: [], idleRssMb: [] }, mtls: { readyMs: [], idleRssMb: [] }, bareRssMb: [], loadsBytes: built.roles.find((r) => r.role === 'proxy')?.bytes ?? Number.NaN }
  try {
    await waitForReady(control, controlAdmin, 30_000)
    const ports = portsOf(mesh, 'client')
    const admin = ports.admin
    const tokenFile = join(dir, 'token')
    writeFileSync(tokenFile, tokens.client)
    const launch = {
      plaintext: { args: ['--mesh-file', mesh.file, '--workload', 'client'], env: {} },
      // What the injector gives a pod's sidecar: addresses, app ports, the control plane, a token.
      mtls: {
        args: ['--outbound-addr', `127.0.0.1:${ports.outbound}`, '--inbound-addr', `127.0.0.1:${ports.inbound}`, '--admin-addr', `127.0.0.1:${admin}`, '--app-ports', '1'],
        env: { REMORA_CONTROL_ADDR: `127.0.0.1:${controlPort}`, REMORA_TRUST_ANCHORS: join(caDir, 'root.pem'), REMORA_TOKEN_FILE: tokenFile, REMORA_IDENTITY: 'spiffe://cluster.local/ns/bench/sa/client' },
      },
    }
    for (let i = 0; i < runs; i++) {
      // Interleaved, so a machine that drifts in speed drifts for every series alike.
      for (const kind of ['plaintext', 'mtls'] as const) {
        const startedAt = performance.now()
        const child = startChild(`startup-${kind}-${i}`, process.execPath, [...IMAGE_NODE_FLAGS, cli, 'proxy', ...launch[kind].args], {
          cpus: env.pin.hop1,
          logFile: join(dir, `sidecar-${kind}-${i}.log`),
          env: { ...process.env, REMORA_LOG_LEVEL: 'warn', REMORA_ACCESS_LOG: 'off', ...launch[kind].env },
        })
        try {
          result[kind].readyMs.push(await readyAfter(admin, child, startedAt))
          await new Promise((resolve) => setTimeout(resolve, IDLE_SETTLE_MS))
          result[kind].idleRssMb.push(rssMb(child))
        } finally {
          await stopChild(child, 5_000)
        }
      }
      const port = await freePort()
      const bare = startChild(`startup-bare-${i}`, process.execPath, [bareFile, join(caDir, 'issuer.pem'), join(caDir, 'issuer-key.pem'), String(port)], { cpus: env.pin.hop1, logFile: join(dir, `bare-${i}.log`) })
      try {
        await new Promise((resolve) => setTimeout(resolve, 300 + IDLE_SETTLE_MS))
        result.bareRssMb.push(rssMb(bare))
      } finally {
        await stopChild(bare, 2_000)
      }
    }
  } finally {
    await stopChild(control, 5_000)
  }
  return result
}
