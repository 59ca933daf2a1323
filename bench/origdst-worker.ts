// The origdst case's worker (bench/origdst.ts runs it, in a network namespace with a nat OUTPUT
// REDIRECT rule when it can): a listener that calls remora's originalDstLookup().lookup(socket) on
// every accepted connection, as the sidecar's listener does, and times it. One JSON line out.
import { readFileSync } from 'node:fs'
import net, { type Socket } from 'node:net'
import type { OriginalDstLookup } from '../src/transport/original-dst.ts'

export interface OrigDstWorkerOptions {
  /** The original-dst module to load: the working tree's, a --rev checkout's or compiled JS. */
  module: string
  listenPort: number
  /** Connections to this address are redirected to listenPort by iptables; absent: none are. */
  redirect?: { host: string, port: number }
  /** Sequential connections of each kind (redirected, direct). */
  connections: number
  /** Calls timed back to back on one open socket of each kind. */
  loop: number
}

export interface LookupKind {
  connections: number
  /** The first lookup on a fresh socket (getsockopt + the socket's first getpeername/getsockname), ns. */
  firstNs: { p50: number, p90: number, p99: number }
  /** A second call on the same socket (address already cached by node), ns. */
  againNs: number
  /** `loop` calls back to back on one socket, mean ns per call. */
  loopNs: number
  /** Client side: connect() to the first byte the listener writes after its lookup, µs (loopback). */
  connectToFirstByteUs: { p50: number, p99: number }
  /** Lookups that did not return what was expected (the original destination; the own address or nothing). */
  wrong: number
  /** What the first lookup returned, as text. */
  sample: string
}

export interface OrigDstWorkerResult {
  available: boolean
  why?: string
  /** originalDstLookup()'s first call: koffi, libc and the function's signature, ms. */
  loadMs: number
  redirected?: LookupKind
  direct?: LookupKind
}

const pct = (sorted: number[], p: number): number => sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.ceil(p / 100 * sorted.length) - 1)]
const sortNum = (xs: number[]): number[] => [...xs].sort((a, b) => a - b)
const now = (): bigint => process.hrtime.bigint()

async function main (o: OrigDstWorkerOptions): Promise<OrigDstWorkerResult> {
  const t0 = now()
  const mod = await import(o.module) as { originalDstLookup: () => OriginalDstLookup }
  const lookup = mod.originalDstLookup()
  const loadMs = Number(now() - t0) / 1e6
  if (!lookup.available) return { available: false, why: lookup.why, loadMs }
  const fn = lookup.lookup
  const perConn: Array<{ first: number, again: number, text: string }> = []
  /** Set for the loop: the next accepted socket is handed over, kept open and not measured. */
  let hold: ((socket: Socket) => void) | undefined
  const server = net.createServer((socket) => {
    if (hold !== undefined) { const h = hold; hold = undefined; h(socket); return }
    const a = now()
    const r = fn(socket)
    const b = now()
    fn(socket)
    const c = now()
    perConn.push({ first: Number(b - a), again: Number(c - b), text: r === undefined ? 'undefined' : `${r.host}:${r.port}` })
    socket.on('error', () => {})
    socket.end('x')
  })
  await new Promise<void>((resolve) => server.listen(o.listenPort, '127.0.0.1', resolve))

  /** One connection: µs from connect() to the listener's byte, then closed. */
  const once = (host: string, port: number): Promise<number> => new Promise((resolve, reject) => {
    const start = now()
    const s = net.connect({ host, port, noDelay: true })
    s.once('error', reject)
    s.once('data', () => {
      const us = Number(now() - start) / 1e3
      s.once('close', () => resolve(us))
      s.destroy()
    })
  })

  const kinds: Array<{ name: 'redirected' | 'direct', host: string, port: number, expect: string }> = [
    ...(o.redirect === undefined ? [] : [{ name: 'redirected' as const, host: o.redirect.host, port: o.redirect.port, expect: `${o.redirect.host}:${o.redirect.port}` }]),
    // Not redirected: ENOENT (undefined) when conntrack does not track the connection; when it does (any nat
    // rule loaded in the namespace), the connection's own destination, which the sidecar's listener discards.
    { name: 'direct', host: '127.0.0.1', port: o.listenPort, expect: `127.0.0.1:${o.listenPort}` },
  ]
  // Warm the call path (JIT, koffi's trampoline) on connections that are not measured.
  for (const k of kinds) for (let i = 0; i < 200; i++) await once(k.host, k.port)
  perConn.length = 0

  const samples = new Map(kinds.map((k) => [k.name, { first: [] as number[], again: [] as number[], us: [] as number[], wrong: 0, sample: '' }]))
  for (let i = 0; i < o.connections; i++) {
    // Interleaved, so that both kinds see the same machine.
    for (const k of i % 2 === 0 ? kinds : [...kinds].reverse()) {
      const us = await once(k.host, k.port)
      const c = perConn.shift()
      const s = samples.get(k.name)
      if (c === undefined || s === undefined) throw new Error('a connection was not seen by the listener')
      s.first.push(c.first)
      s.again.push(c.again)
      s.us.push(us)
      s.sample ||= c.text
      if (c.text !== k.expect && !(k.name === 'direct' && c.text === 'undefined')) s.wrong++
    }
  }

  const result: OrigDstWorkerResult = { available: true, loadMs: Math.round(loadMs * 100) / 100 }
  for (const k of kinds) {
    // The back-to-back loop, on a socket accepted by the listener (the server end is what is looked up).
    const accepted = new Promise<Socket>((resolve) => { hold = resolve })
    const clientEnd = net.connect({ host: k.host, port: k.port, noDelay: true }).on('error', () => {})
    const socket = (await accepted).on('error', () => {})
    if (socket.destroyed) throw new Error('the loop\'s socket closed')
    for (let i = 0; i < 1000; i++) fn(socket)
    const a = now()
    for (let i = 0; i < o.loop; i++) fn(socket)
    const loopNs = Number(now() - a) / o.loop
    if (socket.destroyed) throw new Error('the loop\'s socket closed during the loop')
    clientEnd.destroy()
    socket.destroy()
    const s = samples.get(k.name) as NonNullable<ReturnType<typeof samples.get>>
    const first = sortNum(s.first)
    const us = sortNum(s.us)
    result[k.name] = {
      connections: s.first.length,
      firstNs: { p50: pct(first, 50), p90: pct(first, 90), p99: pct(first, 99) },
      againNs: pct(sortNum(s.again), 50),
      loopNs: Math.round(loopNs),
      connectToFirstByteUs: { p50: Math.round(pct(us, 50) * 10) / 10, p99: Math.round(pct(us, 99) * 10) / 10 },
      wrong: s.wrong,
      sample: s.sample,
    }
  }
  server.close()
  return result
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  const o = JSON.parse(readFileSync(process.argv[2], 'utf8')) as OrigDstWorkerOptions
  main(o).then((r) => { process.stdout.write(JSON.stringify(r) + '\n'); process.exit(0) }, (err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`)
    process.exit(1)
  })
}
