// The idle-connections case: 10,000 keep-alive connections from "the app" to its sidecar's outbound
// port, each after one request through both sidecars, then held idle: the client sidecar's RSS per
// connection, and whether it stays flat while they are held.
import net from 'node:net'
import { execFileSync } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { rssMbOf } from './sample.ts'
import { startRemora, type Env } from './topologies.ts'

export interface IdleConnsResult {
  connections: number
  /** Requests that failed while the connections were opened. */
  failed: number
  baseRssMb: number
  /** Once every connection is open and idle (2 s after the last answer). */
  heldRssMb: number
  /** After holding them `holdS` more seconds. */
  laterRssMb: number
  holdS: number
  kbPerConnection: number
}

/** File descriptors for `pid` (this process, the sidecar): 10,000 sockets exceed the usual 1,024. */
function raiseFdLimit (pid: number, n: number): void {
  execFileSync('prlimit', ['--pid', String(pid), `--nofile=${n}:${n}`], { stdio: 'ignore' })
}

export async function runIdleConns (env: Env, log: (line: string) => void, connections = 10_000, holdS = 5): Promise<{ idleConns: IdleConnsResult }> {
  raiseFdLimit(process.pid, connections + 4096)
  const remora = await startRemora(env, 2)
  const sockets: net.Socket[] = []
  try {
    const client = remora.proxies[0].child
    raiseFdLimit(client.pid, connections + 4096)
    // A new connection, one GET through both sidecars, the whole answer read; then kept open, idle.
    const get = (): Promise<boolean> => new Promise((resolve) => {
      const socket = net.connect(remora.port, '127.0.0.1')
      sockets.push(socket)
      let got = Buffer.alloc(0)
      socket.once('error', () => resolve(false))
      socket.once('connect', () => socket.write(`GET / HTTP/1.1\r\nHost: ${remora.host ?? 'web'}\r\n\r\n`))
      socket.on('data', (chunk: Buffer) => {
        got = Buffer.concat([got, chunk])
        const end = got.indexOf('\r\n\r\n')
        if (end < 0) return
        const length = Number(/content-length: *(\d+)/i.exec(got.subarray(0, end).toString('latin1'))?.[1] ?? NaN)
        if (got.length >= end + 4 + length) resolve(got.subarray(0, 12).toString() === 'HTTP/1.1 200')
      })
    })
    await get()
    await sleep(2000)
    const baseRssMb = rssMbOf(client.pid)
    log(`    opening ${connections.toLocaleString('en-US')} keep-alive connections to the client sidecar, one request each…`)
    let failed = 0
    const wave = 500
    for (let i = 0; i < connections; i += wave) {
      const batch = Array.from({ length: Math.min(wave, connections - i) }, get)
      await Promise.all(batch.map(async (p) => { if (!await p) failed++ }))
    }
    await sleep(2000)
    const heldRssMb = rssMbOf(client.pid)
    const idle = sockets.filter((s) => !s.destroyed).length
    await sleep(holdS * 1000)
    const laterRssMb = rssMbOf(client.pid)
    const result = { connections: idle, failed, baseRssMb, heldRssMb, laterRssMb, holdS, kbPerConnection: (heldRssMb - baseRssMb) * 1024 / Math.max(1, idle) }
    log(`    ${idle} idle connections: RSS ${baseRssMb.toFixed(1)} → ${heldRssMb.toFixed(1)} MB (${result.kbPerConnection.toFixed(1)} KB each), ${laterRssMb.toFixed(1)} MB ${holdS} s later; ${failed} failed`)
    return { idleConns: result }
  } finally {
    for (const s of sockets) s.destroy()
    await remora.stop()
  }
}
