// The gRPC unary case: h2load sends one ~100-byte unary call at a time per stream (-c10 -m10) to a
// grpc-js server, directly and through two sidecars (its port declared `grpc`), in alternating
// rounds; each path is first checked with a real grpc-js call answering status OK.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Client, credentials, Metadata } from '@grpc/grpc-js'
import { freePort } from '../test/harness/mesh.ts'
import { h2load, type LoadResult, type RunContext } from './loadgen.ts'
import { startChild, stopChild, waitForPort } from './procs.ts'
import { startRemora, type Env } from './topologies.ts'
import { UNARY_PATH } from './grpc-app.ts'

const BENCH = new URL('.', import.meta.url).pathname
const MESSAGE = Buffer.from('{"client":"bench","message":"a unary call of about a hundred bytes through the mesh","pad":"0123456789"}')

export interface GrpcUnaryResult {
  /** Mean of the measured rounds, each path. */
  direct: LoadResult
  mesh: LoadResult
  rounds: number
}

/** One call with grpc-js to `port` (authority `authority`): resolves when it answers status OK with the app's answer. */
async function check (port: number, authority: string | undefined): Promise<void> {
  const client = new Client(`127.0.0.1:${port}`, credentials.createInsecure(), authority === undefined ? {} : { 'grpc.default_authority': authority })
  try {
    await new Promise<void>((resolve, reject) => {
      client.makeUnaryRequest(UNARY_PATH, (b: Buffer) => b, (b: Buffer) => b, MESSAGE, new Metadata(), { deadline: Date.now() + 10_000 }, (err, answer) => {
        if (err !== null) reject(new Error(`gRPC check through port ${port} failed: ${err.message}`))
        else if (answer === undefined || !answer.toString().includes('remora bench gRPC app')) reject(new Error(`gRPC check through port ${port}: unexpected answer`))
        else resolve()
      })
    })
  } finally { client.close() }
}

function mean (runs: LoadResult[]): LoadResult {
  const avg = (f: (r: LoadResult) => number): number => runs.reduce((s, r) => s + f(r), 0) / runs.length
  return { rps: avg((r) => r.rps), p50: avg((r) => r.p50), p99: avg((r) => r.p99), p999: avg((r) => r.p999 ?? NaN), requests: avg((r) => r.requests), errors: runs.reduce((s, r) => s + r.errors, 0) }
}

export async function runGrpcUnary (env: Env, ctx: RunContext, log: (line: string) => void, seconds: number, rounds = 2): Promise<{ grpcUnary: GrpcUnaryResult }> {
  const port = await freePort()
  const app = startChild('grpc-app', process.execPath, [join(BENCH, 'grpc-app.ts'), String(port)], { cpus: env.pin.app, logFile: join(env.tmp, 'grpc-app.log'), stdinPipe: true })
  try {
    await waitForPort(app, port)
    const remora = await startRemora(env, 2, { app: { port, protocol: 'grpc' } })
    try {
      await check(port, undefined)
      await check(remora.port, remora.host)
      // The body h2load posts: one gRPC message (uncompressed flag, 4-byte length, the bytes).
      const frame = Buffer.concat([Buffer.from([0]), Buffer.alloc(4), MESSAGE])
      frame.writeUInt32BE(MESSAGE.length, 1)
      const data = join(env.tmp, 'grpc-message.bin')
      writeFileSync(data, frame)
      const load = (p: number, authority: string | undefined, s: number): Promise<LoadResult> => h2load(ctx, `http://127.0.0.1:${p}${UNARY_PATH}`, {
        clients: 10, streams: 10, seconds: s, authority, data, headers: ['content-type: application/grpc', 'te: trailers'],
      })
      const paths = { direct: { port, authority: undefined }, mesh: { port: remora.port, authority: remora.host } }
      const runs: Record<'direct' | 'mesh', LoadResult[]> = { direct: [], mesh: [] }
      for (let i = 0; i < rounds; i++) {
        for (const name of ['direct', 'mesh'] as const) {
          const p = paths[name]
          log(`    round ${i + 1}/${rounds}: ${name}…`)
          if (i === 0) await load(p.port, p.authority, 2)
          runs[name].push(await load(p.port, p.authority, seconds))
        }
      }
      const result = { direct: mean(runs.direct), mesh: mean(runs.mesh), rounds }
      log(`    gRPC unary: direct ${Math.round(result.direct.rps)} calls/s, two sidecars ${Math.round(result.mesh.rps)} calls/s (${(result.mesh.rps / result.direct.rps).toFixed(2)}×)`)
      return { grpcUnary: result }
    } finally {
      await remora.stop()
    }
  } finally {
    await stopChild(app)
  }
}
