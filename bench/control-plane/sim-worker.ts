// bench:control's simulation worker (a child process): a share of the simulated sidecars, one HTTP/2
// session each, one watch stream per authority; records when each endpoint change arrives.
import http2, { type ClientHttp2Session } from 'node:http2'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { WATCH_PATH, decode } from '../../src/discovery/wire.ts'
import { now, useClock } from './clock.ts'
import { noCounts, type Arrival, type Mismatch, type SidecarSpec, type ToWorker, type WorkerStats } from './protocol.ts'

class SimWatch {
  readonly sidecar: number
  readonly authority: string
  version = -1
  keys = new Set<string>()
  answered = false
  buffered = ''

  constructor (sidecar: number, authority: string) {
    this.sidecar = sidecar
    this.authority = authority
  }
}

async function workerMain (): Promise<void> {
  const counts = noCounts()
  let arrivals: Arrival[] = []
  const watches: SimWatch[] = []
  const sessions: ClientHttp2Session[] = []
  let closing = false
  let lastError: string | undefined
  const eld = monitorEventLoopDelay({ resolution: 5 })
  eld.enable()

  const handle = (w: SimWatch, line: string, t: number): void => {
    let m
    try { m = decode(line) } catch (err) { counts.badMessages++; lastError = (err as Error).message; return }
    if (m.type === 'snapshot') {
      if (w.answered) counts.resnapshot++
      counts.snapshot++
      w.version = m.version
      w.keys = new Set(m.service.endpoints.map((e) => e.key))
    } else if (m.type === 'delta') {
      counts.delta++
      if (m.previous !== w.version) { counts.gaps++; lastError = `${w.authority}: delta previous ${m.previous}, holding ${w.version}` }
      w.version = m.version
      for (const k of m.remove) if (w.keys.delete(k)) arrivals.push([w.sidecar, w.authority, k, 0, t])
      for (const e of m.add) if (!w.keys.has(e.key)) { w.keys.add(e.key); arrivals.push([w.sidecar, w.authority, e.key, 1, t]) }
    } else {
      counts.absent++
      w.version = m.version
      w.keys = new Set()
    }
    w.answered = true
  }

  const connect = (spec: SidecarSpec, addr: string, timeoutMs: number): Promise<void> => new Promise((resolve) => {
    const session = http2.connect(`http://${addr}`)
    sessions.push(session)
    session.on('error', (err) => { counts.sessionErrors++; lastError = err.message })
    let pending = spec.authorities.length
    const timer = setTimeout(() => { lastError = `sidecar ${spec.id}: ${pending} watches unanswered after ${timeoutMs} ms`; resolve() }, timeoutMs)
    const answered = (): void => { if (--pending === 0) { clearTimeout(timer); resolve() } }
    for (const authority of spec.authorities) {
      const w = new SimWatch(spec.id, authority)
      watches.push(w)
      const req = session.request({ ':path': `${WATCH_PATH}?authority=${encodeURIComponent(authority)}`, 'remora-workload': `sim-${spec.id}` }, { endStream: true })
      req.setEncoding('utf8')
      req.on('response', (h) => { if (h[':status'] !== 200) { counts.badStatus++; lastError = `${authority}: HTTP ${String(h[':status'])}` } })
      req.on('data', (chunk: string) => {
        const t = now()
        counts.bytes += chunk.length
        const was = w.answered
        let text = w.buffered + chunk
        let nl: number
        while ((nl = text.indexOf('\n')) >= 0) {
          handle(w, text.slice(0, nl), t)
          text = text.slice(nl + 1)
        }
        w.buffered = text
        if (!was && w.answered) answered()
      })
      req.on('error', (err) => { if (!closing) { counts.streamErrors++; lastError = `${authority}: ${err.message}` } })
      req.on('close', () => { if (!closing) counts.streamEnds++ })
    }
  })

  const reply = (msg: object): void => { process.send?.(msg) }
  process.on('disconnect', () => process.exit(0))
  process.on('message', (raw) => {
    const m = raw as ToWorker
    switch (m.cmd) {
      case 'init': {
        useClock(BigInt(m.base))
        const started = now()
        const queue = [...m.sidecars]
        const lane = async (): Promise<void> => {
          for (let s = queue.shift(); s !== undefined; s = queue.shift()) await connect(s, m.addr, m.timeoutMs)
        }
        void Promise.all(Array.from({ length: Math.max(1, m.concurrency) }, lane)).then(() => {
          reply({ id: m.id, ms: now() - started, done: now(), watches: watches.length, answered: watches.filter((w) => w.answered).length })
        })
        break
      }
      case 'collect':
        reply({ id: m.id, arrivals })
        arrivals = []
        break
      case 'stats': {
        const stats: WorkerStats = { counts: { ...counts }, loopDelayP99Ms: eld.percentile(99) / 1e6, loopDelayMaxMs: eld.max / 1e6, lastError }
        eld.reset()
        reply({ id: m.id, stats })
        break
      }
      case 'verify': {
        const mismatches: Mismatch[] = []
        for (const w of watches) {
          const want = m.expected[w.authority] ?? []
          const missing = want.filter((k) => !w.keys.has(k))
          const wanted = new Set(want)
          const extra = [...w.keys].filter((k) => !wanted.has(k))
          if (missing.length > 0 || extra.length > 0) mismatches.push({ sidecar: w.sidecar, authority: w.authority, expected: want.length, got: w.keys.size, missing: missing.slice(0, 3), extra: extra.slice(0, 3) })
        }
        reply({ id: m.id, mismatches, watches: watches.length })
        break
      }
      case 'close':
        closing = true
        for (const s of sessions) s.destroy()
        reply({ id: m.id })
        break
    }
  })
  process.send?.({ id: 0, ready: true })
}

void workerMain()
