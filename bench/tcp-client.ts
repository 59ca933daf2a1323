// Opaque-TCP load generator (run as a child by bench/tcp.ts, options in a JSON file, one JSON line out):
// bulk transfers (MB/s each way) and first-byte latency of a server-speaks-first app, over several
// paths at once — direct to the app, or a CONNECT tunnel through a sidecar's outbound listener —
// interleaved so that the machine's drift touches every path alike.
import { readFileSync } from 'node:fs'
import net, { type Socket } from 'node:net'
import { cpuTicksOf, ticksPerSecond } from './sample.ts'
import { GREETING, sendBytes } from './tcp-app.ts'

export interface TcpPath {
  /** Name in the results, e.g. `direct`, `plaintext`, `mtls`. */
  name: string
  /** Where the client connects: the app's port (direct), or a sidecar's outbound listener. */
  port: number
  /** CONNECT this authority first (through a sidecar); absent: the port is the app itself. */
  connect?: string
  /** Processes whose CPU time is counted per transfer (the sidecars on this path). */
  procs: Array<{ label: string, pid: number }>
}

export interface BulkOptions {
  mode: 'bulk'
  paths: TcpPath[]
  /** Bytes per measured transfer, one connection each. */
  bytes: number
  /** Unmeasured transfers per path and direction first (JIT, discovery, TLS session set-up). */
  warmups: number
  reps: number
  appPid: number
}

export interface FirstByteOptions {
  mode: 'first-byte'
  paths: TcpPath[]
  samples: number
  warmups: number
}

export interface BulkDirection {
  /** MB/s (10^6 bytes per second) of each measured transfer, in order. */
  mbps: number[]
  /** CPU of each path process (and the app, the client) over the measured transfers, % of one core. */
  cpuPct: Record<string, number>
}

export interface BulkPathResult { name: string, down: BulkDirection, up: BulkDirection }

export interface FirstBytePathResult {
  name: string
  /** Milliseconds from connect() (or the CONNECT request) to the greeting's first byte, per connection. */
  ms: number[]
  errors: number
  firstError?: string
}

const EMPTY = Buffer.alloc(0)
const TIMEOUT_MS = 60_000

interface Opened { socket: Socket, rest: Buffer }

/** A connection to the app: direct, or a tunnel (`CONNECT host:port` answered 200); paused. */
function open (p: TcpPath): Promise<Opened> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: p.port, noDelay: true, allowHalfOpen: true })
    const fail = (err: Error): void => { s.destroy(); reject(err) }
    s.once('error', fail)
    if (p.connect === undefined) {
      s.once('connect', () => { s.off('error', fail); s.pause(); resolve({ socket: s, rest: EMPTY }) })
      return
    }
    s.write(`CONNECT ${p.connect} HTTP/1.1\r\nHost: ${p.connect}\r\n\r\n`)
    let buf: Buffer = EMPTY
    const onData = (d: Buffer): void => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d])
      const end = buf.indexOf('\r\n\r\n')
      if (end < 0) return
      s.off('data', onData)
      s.pause()
      const head = buf.subarray(0, end).toString('latin1')
      if (!/^HTTP\/1\.[01] 200 /.test(head)) { fail(new Error(`CONNECT ${p.connect}: ${head.split('\r\n')[0]}`)); return }
      s.off('error', fail)
      resolve({ socket: s, rest: buf.subarray(end + 4) })
    }
    s.on('data', onData)
    s.once('end', () => fail(new Error(`CONNECT ${p.connect}: closed before an answer`)))
  })
}

/** Starts a transfer on an open connection; resolves with its seconds once the app has closed its side and `check` finds nothing wrong. */
function transfer (socket: Socket, what: string, start: () => void, onData: (c: Buffer) => void, check: () => string | undefined): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`${what}: no end within ${TIMEOUT_MS} ms`)) }, TIMEOUT_MS)
    socket.once('error', (err) => { clearTimeout(timer); reject(err) })
    const t0 = performance.now()
    socket.on('data', onData)
    socket.once('end', () => {
      const seconds = (performance.now() - t0) / 1000
      clearTimeout(timer)
      socket.destroy()
      const wrong = check()
      if (wrong === undefined) resolve(seconds)
      else reject(new Error(`${what}: ${wrong}`))
    })
    start()
    socket.resume()
  })
}

/** The app sends `n` bytes; seconds from the request to the last byte. */
async function down (p: TcpPath, n: number): Promise<number> {
  const { socket, rest } = await open(p)
  let got = rest.length
  return transfer(socket, `${p.name} down`, () => socket.write(`down ${n}\n`), (c) => { got += c.length }, () => got === n ? undefined : `got ${got} of ${n} bytes`)
}

/** The client sends `n` bytes; seconds from the first byte to the app's `ok`. */
async function up (p: TcpPath, n: number): Promise<number> {
  const { socket, rest } = await open(p)
  let answer = rest.toString('latin1')
  return transfer(socket, `${p.name} up`, () => { socket.write(`up ${n}\n`); sendBytes(socket, n, () => {}) }, (c) => { answer += c.toString('latin1') }, () => answer === 'ok\n' ? undefined : `answer ${JSON.stringify(answer.slice(0, 100))}`)
}

/** `list` rotated by `by`: each repetition starts with another path. */
const rotate = <T>(list: T[], by: number): T[] => list.map((_, i) => list[(i + by) % list.length])

/** One path and direction so far: each transfer's MB/s, CPU ticks per process and the seconds they add up to. */
interface Tally { mbps: number[], ticks: Map<string, number>, seconds: number }

async function bulk (o: BulkOptions): Promise<BulkPathResult[]> {
  const hz = ticksPerSecond()
  const tally = (): Tally => ({ mbps: [], ticks: new Map(), seconds: 0 })
  const results = new Map(o.paths.map((p) => [p.name, { down: tally(), up: tally() }]))
  const of = (name: string): { down: Tally, up: Tally } => results.get(name) as { down: Tally, up: Tally }
  for (const p of o.paths) {
    for (let i = 0; i < o.warmups; i++) { await down(p, o.bytes); await up(p, o.bytes) }
  }
  for (let rep = 0; rep < o.reps; rep++) {
    for (const p of rotate(o.paths, rep)) {
      for (const dir of ['down', 'up'] as const) {
        const procs = [...p.procs, { label: 'app', pid: o.appPid }]
        const before = procs.map((q) => cpuTicksOf(q.pid))
        const cpu0 = process.cpuUsage()
        const seconds = await (dir === 'down' ? down(p, o.bytes) : up(p, o.bytes))
        const cpu = process.cpuUsage(cpu0)
        const r = of(p.name)[dir]
        r.mbps.push(o.bytes / 1e6 / seconds)
        r.seconds += seconds
        procs.forEach((q, i) => r.ticks.set(q.label, (r.ticks.get(q.label) ?? 0) + cpuTicksOf(q.pid) - before[i]))
        r.ticks.set('client', (r.ticks.get('client') ?? 0) + (cpu.user + cpu.system) / 1e6 * hz)
      }
    }
  }
  return o.paths.map((p) => {
    const r = of(p.name)
    const dir = (d: Tally): BulkDirection => ({
      mbps: d.mbps.map((v) => Math.round(v * 10) / 10),
      cpuPct: Object.fromEntries([...d.ticks].map(([label, ticks]) => [label, Math.round(ticks / hz / d.seconds * 1000) / 10])),
    })
    return { name: p.name, down: dir(r.down), up: dir(r.up) }
  })
}

/** One connection: ms from connect() to the greeting's first byte; then a clean close, waited for. */
async function firstByte (p: TcpPath): Promise<number> {
  const t0 = performance.now()
  const { socket, rest } = await open(p)
  const got = rest.length > 0
    ? { at: performance.now(), byte: rest[0] }
    : await new Promise<{ at: number, byte: number }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${p.name}: no greeting within ${TIMEOUT_MS} ms`)), TIMEOUT_MS)
      socket.once('data', (c: Buffer) => { clearTimeout(timer); resolve({ at: performance.now(), byte: c[0] }) })
      socket.once('end', () => { clearTimeout(timer); reject(new Error(`${p.name}: closed before the greeting`)) })
      socket.once('error', (err) => { clearTimeout(timer); reject(err) })
      socket.resume()
    }).finally(() => socket.removeAllListeners('data'))
  // Close as a client does, and let the whole chain wind down before the next connection.
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => { socket.destroy(); resolve() }, 5000)
    socket.on('error', () => {})
    socket.once('close', () => { clearTimeout(timer); resolve() })
    socket.resume()
    socket.end()
  })
  if (got.byte !== GREETING[0]) throw new Error(`${p.name}: first byte 0x${got.byte.toString(16)}, not the greeting's`)
  return got.at - t0
}

async function firstBytes (o: FirstByteOptions): Promise<FirstBytePathResult[]> {
  const results = new Map<string, FirstBytePathResult>(o.paths.map((p) => [p.name, { name: p.name, ms: [], errors: 0 }]))
  for (const p of o.paths) for (let i = 0; i < o.warmups; i++) await firstByte(p)
  for (let i = 0; i < o.samples; i++) {
    for (const p of rotate(o.paths, i)) {
      const r = results.get(p.name) as FirstBytePathResult
      try { r.ms.push(Math.round((await firstByte(p)) * 1000) / 1000) } catch (err) {
        r.errors++
        r.firstError ??= (err as Error).message
      }
    }
  }
  return [...results.values()]
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  const o = JSON.parse(readFileSync(process.argv[2], 'utf8')) as BulkOptions | FirstByteOptions
  const run = o.mode === 'bulk' ? bulk(o) : firstBytes(o)
  run.then((r) => { process.stdout.write(JSON.stringify(r) + '\n'); process.exit(0) }, (err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`)
    process.exit(1)
  })
}
