// A quiet sidecar gives memory back: one memory-reducing GC after start-up and after each busy
// period, never while a request is in flight or opaque TCP bytes move, never twice for one quiet
// period; a real sidecar (the image's flags, so --expose-gc) does it after start-up and its RSS drops.
import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import net from 'node:net'
import { once } from 'node:events'
import pino from 'pino'
import { compactWhenIdle, type Activity, type CompactionOptions } from '../../src/proxy/idle-compaction.ts'
import { freePort, pairSpec, SidecarProcess, startMesh, writeMesh, type SidecarPorts } from '../harness/mesh.ts'
import { encodeTcpHeader } from '../../src/transport/tcp-header.ts'
import { waitForLines } from '../harness/ready.ts'

const silent = pino({ level: 'silent' })
// The compactor's timer is unref'd (it never keeps a sidecar alive); this keeps the test's process up.
const keepAlive = setInterval(() => {}, 1_000)
t.teardown(() => clearInterval(keepAlive))

/** Activity under the test's control; `ticks(n)` settles once the compactor has looked n more times. */
function activitySource (): { now: Activity & { inflight: number, events: number }, read: () => Activity, ticks: (n: number) => Promise<void> } {
  const now = { inflight: 0, events: 0 }
  const waiting: Array<{ at: number, resolve: () => void }> = []
  let reads = 0
  return {
    now,
    read: () => {
      reads++
      for (const w of waiting.filter((w) => w.at <= reads)) { waiting.splice(waiting.indexOf(w), 1); w.resolve() }
      return { ...now }
    },
    ticks: (n) => new Promise((resolve) => waiting.push({ at: reads + n, resolve })),
  }
}

function fakeGc (): { gc: () => void, calls: () => number, next: () => Promise<void> } {
  let calls = 0
  let waiter: (() => void) | undefined
  return {
    gc: () => { calls++; waiter?.() },
    calls: () => calls,
    next: () => new Promise((resolve) => { waiter = resolve }),
  }
}

const fast = (o: Partial<CompactionOptions>): CompactionOptions => ({ afterStartMs: 0, afterTrafficMs: 0, tickMs: 2, ...o })

t.test('after start-up: compacts once when quiet, not while a request is in flight, not again until new traffic', async (t) => {
  const a = activitySource()
  const g = fakeGc()
  a.now.inflight = 1
  const c = compactWhenIdle(a.read, silent, fast({}), g.gc)
  t.teardown(() => c.stop())
  await a.ticks(20)
  t.equal(g.calls(), 0, 'a request in flight: no compaction')
  const compacted = g.next()
  a.now.inflight = 0
  await compacted
  await a.ticks(20)
  t.equal(g.calls(), 1, 'one compaction for one quiet period')
  a.now.events = 5
  const again = g.next()
  await again
  t.equal(g.calls(), 2, 'traffic, then quiet again: compacted again')
})

t.test('after traffic it waits its own, longer quiet time', async (t) => {
  const a = activitySource()
  const g = fakeGc()
  a.now.events = 1
  const c = compactWhenIdle(a.read, silent, fast({ afterTrafficMs: 3_600_000 }), g.gc)
  t.teardown(() => c.stop())
  await a.ticks(30)
  t.equal(g.calls(), 0, 'an hour of quiet is required after traffic: not yet')
})

t.test('requests beginning on every look keep it from compacting', async (t) => {
  const a = activitySource()
  const g = fakeGc()
  const c = compactWhenIdle(() => { a.now.events++; return a.read() }, silent, fast({}), g.gc)
  t.teardown(() => c.stop())
  await a.ticks(30)
  t.equal(g.calls(), 0)
})

t.test('without --expose-gc it does nothing and says so at debug level', async (t) => {
  const lines: string[] = []
  const log = pino({ level: 'debug' }, { write: (s: string) => { lines.push(s) } })
  const c = compactWhenIdle(() => ({ inflight: 0, events: 0 }), log, fast({}), undefined)
  c.stop()
  t.match(lines.join(''), /idle compaction off: node was started without --expose-gc/)
})

t.test('a real sidecar, started as the image starts it, gives its start-up memory back', async (t) => {
  const mesh = await startMesh(t, pairSpec(await freePort()), { only: ['web'], env: { REMORA_LOG_LEVEL: 'debug' } })
  const web = mesh.sidecars.get('web')
  if (web === undefined) throw new Error('no web sidecar')
  const given = (l: string): boolean => l.includes('"msg":"idle: memory given back"')
  await waitForLines('web sidecar', web.proc, () => web.output, given)
  const line = JSON.parse(web.output.split('\n').find(given) ?? '{}') as { rss_mb_before: number, rss_mb_after: number, events: number }
  t.equal(line.events, 0, 'no request was served, no byte relayed')
  t.ok(line.rss_mb_after < line.rss_mb_before, `RSS ${line.rss_mb_before} → ${line.rss_mb_after} MB`)
})

t.test('a sidecar carrying only opaque TCP counts its bytes as traffic: no compaction while they flow', async (t) => {
  // The app (as a database would be) echoes what it gets. A peer's plaintext opaque stream (the
  // transport header, then bytes) reaches it through the db's sidecar: no request is on record.
  const echo = net.createServer((s) => { s.on('error', () => {}); s.pipe(s) })
  echo.listen(0, '127.0.0.1')
  await once(echo, 'listening')
  t.teardown(() => { echo.close() })
  const port = (echo.address() as net.AddressInfo).port
  const mesh = await writeMesh({ workloads: { db: { appPorts: [{ port, protocol: 'opaque' as 'auto' }] } }, services: [] })
  const db = new SidecarProcess('db', mesh.ports.get('db') as SidecarPorts, ['--mesh-file', mesh.file, '--workload', 'db'], { ...process.env, REMORA_LOG_LEVEL: 'debug' })
  const given = (): boolean => db.output.includes('"msg":"idle: memory given back"')
  // The stream opens as soon as the inbound port takes connections, before the sidecar is ready and
  // starts its compactor: the first bytes then always come before its first look.
  const ready = db.start()
  t.teardown(() => db.stop('SIGKILL'))
  let socket: net.Socket | undefined
  while (socket === undefined) {
    const s = net.connect(db.ports.inbound, '127.0.0.1')
    const up = await new Promise<boolean>((resolve) => { s.once('connect', () => resolve(true)); s.once('error', () => resolve(false)) })
    if (up) socket = s
    else await sleep(20)
  }
  t.teardown(() => socket.destroy())
  socket.write(encodeTcpHeader({ port }))
  const pingPong = async (): Promise<void> => {
    socket.write(`ping ${rounds}\n`)
    await once(socket, 'data')
    rounds++
  }
  let rounds = 0
  await pingPong()
  await ready
  // Ping-pong for 2.5 s past ready: idle, the sidecar compacts 1 s after its compactor starts (the
  // last test shows it does, unprompted).
  const until = performance.now() + 2_500
  while (performance.now() < until && !given()) await pingPong()
  t.notOk(given(), `no compaction during ${rounds} round trips over the db's opaque stream`)
})
