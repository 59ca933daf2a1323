// Black-box resilience, balancing: a slow endpoint is avoided by P2C peak-EWMA; an endpoint killed
// under load costs only the requests in flight on it and comes back after a restart; one gRPC
// channel is spread over every endpoint (per request, not per connection).
import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { startMesh } from '../harness/mesh.ts'
import { START_TIMEOUT_MS, waitForLines } from '../harness/ready.ts'
import { startApp } from '../harness/apps.ts'
import { drive, pool, Seen, tally } from '../harness/load.ts'
import { echoClient, startEchoServer, unary } from '../harness/grpc-echo.ts'

/** `p`, or an error once `ms` have passed: a guard against a hang, not a speed check. */
async function guarded<T> (p: Promise<T>, what: string, ms = START_TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms) })
  try {
    return await Promise.race([p, timeout])
  } finally { clearTimeout(timer) }
}

t.test('an endpoint 300 ms slower than its two peers gets < 10 % of the requests (p2c-ewma)', async (t) => {
  const seen = { a: new Seen(), b: new Seen(), c: new Seen() }
  const app = (name: 'a' | 'b' | 'c', delayMs: number) => startApp(t, (req, res) => {
    seen[name].note(req)
    req.resume()
    setTimeout(() => res.end(name), delayMs)
  })
  // 300 ms, not 100: on a loaded 2-core CI machine the fast endpoints' own latency peaks at tens of
  // ms (queueing, GC), peak EWMA holds a peak for seconds, and at 10 in flight their cost then came
  // near a 100 ms endpoint's (it served 12 % in one CI run). The property is the same: slow gets little.
  const [a, b, c] = await Promise.all([app('a', 0), app('b', 0), app('c', 300)])
  const mesh = await startMesh(t, {
    workloads: { client: { appPorts: [1] }, a: { appPorts: [a.port] }, b: { appPorts: [b.port] }, c: { appPorts: [c.port] } },
    services: [{ name: 'web', port: 80, endpoints: [{ workload: 'a', targetPort: a.port }, { workload: 'b', targetPort: b.port }, { workload: 'c', targetPort: c.port }] }],
  })
  const N = 1500
  // 10 in flight: P2C weighs latency × (in flight + 1), so at much higher concurrency on a busy
  // machine the slow endpoint rightly takes some of the queue.
  const outcomes = await drive(pool(t, mesh.sidecar('client').proxyUrl, 10), 'web', N, 10)
  const share = seen.c.requests / N
  t.comment(`${JSON.stringify(tally(outcomes))}; served a=${seen.a.requests} b=${seen.b.requests} c (slow)=${seen.c.requests} → ${(100 * share).toFixed(2)} %`)
  t.equal(outcomes.filter((o) => o.status === 200).length, N, 'every request succeeded')
  t.ok(share < 0.1, `the slow endpoint served ${(100 * share).toFixed(2)} % (< 10 %)`)
})

t.test('an endpoint killed under load: failures only for requests in flight on it; back in rotation after a restart', async (t) => {
  const seen = { a: new Seen(), b: new Seen(), c: new Seen() }
  const arrivals: number[] = []
  /** Checked at each request c's app receives: what the test waits for (c serving, c serving again). */
  const onArrival = new Set<() => void>()
  const cServed = (check: () => boolean): Promise<void> => new Promise((resolve) => {
    const listener = (): void => { if (check()) { onArrival.delete(listener); resolve() } }
    onArrival.add(listener)
    listener()
  })
  const started = performance.now()
  const app = (name: 'a' | 'b' | 'c') => startApp(t, (req, res) => {
    seen[name].note(req)
    if (name === 'c') {
      arrivals.push(performance.now() - started)
      for (const l of [...onArrival]) l()
    }
    req.resume()
    // A few ms of work, so some requests are in flight on c when its sidecar dies.
    setTimeout(() => res.end(name), 5)
  })
  const [a, b, c] = await Promise.all([app('a'), app('b'), app('c')])
  const mesh = await startMesh(t, {
    workloads: { client: { appPorts: [1] }, a: { appPorts: [a.port] }, b: { appPorts: [b.port] }, c: { appPorts: [c.port] } },
    services: [{ name: 'web', port: 80, endpoints: [{ workload: 'a', targetPort: a.port }, { workload: 'b', targetPort: b.port }, { workload: 'c', targetPort: c.port }] }],
  })
  const client = mesh.sidecar('client')
  const victim = mesh.sidecar('c')
  let stop = false
  const load = drive(pool(t, client.proxyUrl, 20), 'web', 1e9, 20, { until: () => stop })
  const offset = performance.now() - started
  // Load for a second, and until c has its share of it: a busy machine may take longer to get there.
  await Promise.all([sleep(1000), guarded(cServed(() => seen.c.requests >= 20), 'c serving its share of the load')])
  const isEjection = (l: string): boolean => l.includes('"msg":"endpoint ejected after consecutive failures"')
  const ejectionsBefore = client.output.split('\n').filter(isEjection).length
  const killedAt = performance.now() - started
  const cBefore = seen.c.requests
  await victim.stop('SIGKILL')
  // From here on, a request reaching c's app came through its restarted sidecar.
  const deadAt = performance.now() - started
  // c stays down 1.5 s, and until the client sidecar has ejected it (asserted below), however long that takes.
  const ejected = waitForLines('sidecar client', client.proc, () => client.output, isEjection, ejectionsBefore + 1)
  await Promise.all([sleep(1500), ejected])
  await victim.start()
  const restartedAt = performance.now() - started
  // The ejection backoff in force: 1 s doubling per failed probe (jittered ×0.75-1.25) while c was
  // down, so it depends on how long the restart took; checked against the logged ejections below.
  // Waits for that; the time limit is a guard (the longest ejection is 60 s, jittered up to 75 s).
  let back: number | undefined
  await guarded(cServed(() => (back = arrivals.find((at) => at > deadAt)) !== undefined), 'the restarted endpoint serving again', 2 * START_TIMEOUT_MS).catch(() => {})
  const backWall = back === undefined ? undefined : Date.now() - (performance.now() - started - back)
  await sleep(300)
  stop = true
  const outcomes = (await load).map((o) => ({ ...o, sentAt: o.sentAt + offset, doneAt: o.doneAt + offset }))

  const failures = outcomes.filter((o) => o.status !== 200)
  const firstSeen = Math.min(...failures.map((o) => o.doneAt))
  const late = failures.filter((o) => o.sentAt > firstSeen)
  const ejections = client.logs().filter((l) => l.msg === 'endpoint ejected after consecutive failures')
  t.comment(`${outcomes.length} requests: ${JSON.stringify(tally(outcomes))}; c served ${cBefore} before the kill at ${killedAt.toFixed(0)} ms`)
  t.comment(`failures: ${failures.length}, all within ${failures.length === 0 ? 0 : (Math.max(...failures.map((o) => o.doneAt)) - killedAt).toFixed(0)} ms of the kill; first seen ${failures.length === 0 ? '-' : (firstSeen - killedAt).toFixed(0)} ms after it; sent after that and failed: ${late.length}`)
  t.comment(`ejections: ${ejections.map((l) => `${String(l.ejected_for_ms)} ms`).join(', ')}; restarted (ready) at ${restartedAt.toFixed(0)} ms, c served again ${back === undefined ? 'never' : `${(back - restartedAt).toFixed(0)} ms later`}; c served ${arrivals.filter((at) => at > deadAt).length} after the restart`)
  t.ok(cBefore > 0, 'c served before the kill')
  t.ok(failures.length <= 20, `at most the requests in flight on c failed (${failures.length})`)
  t.equal(late.length, 0, 'no request sent after the first failure was seen failed (refused connections are retried elsewhere)')
  // "Right after": within 1 s, or, on a machine too busy for that, within what the kill took to take
  // effect plus the slowest answer to a request sent around it (a failure is an answer too).
  const nearKill = outcomes.filter((o) => o.status === 200 && o.sentAt >= killedAt - 1000 && o.sentAt <= deadAt + 1000)
  const rightAfterMs = Math.max(1000, deadAt - killedAt + Math.max(0, ...nearKill.map((o) => o.doneAt - o.sentAt)))
  t.comment(`the kill took ${(deadAt - killedAt).toFixed(0)} ms to take effect; "right after" it: ${rightAfterMs.toFixed(0)} ms`)
  t.ok(failures.every((o) => o.doneAt - killedAt < rightAfterMs), 'failures only right after the kill')
  t.not(back, undefined, 'the restarted endpoint came back into rotation')
  // The last ejection before c served again (after a failed probe, possibly during the restart):
  // c must be back once it ends, give or take the probe's own time.
  const last = ejections.filter((l) => backWall !== undefined && Date.parse(String(l.time)) <= backWall).at(-1)
  const ends = last === undefined ? undefined : Date.parse(String(last.time)) + Number(last.ejected_for_ms)
  t.comment(`last ejection before c served again: ${last === undefined ? '-' : `${String(last.ejected_for_ms)} ms from ${String(last.time)}`}; c served ${backWall === undefined || ends === undefined ? '-' : (backWall - ends).toFixed(0)} ms after it ended`)
  t.ok(backWall !== undefined && ends !== undefined && backWall - ends < 2000, 'within the ejection backoff: served again as soon as the ejection in force ended')
  t.ok(ejections.length >= 1, 'the dead endpoint was ejected')
})

t.test('gRPC: one channel, 300 unary calls, spread over three endpoints per call (no per-connection pinning)', async (t) => {
  const served = { rr: [0, 0, 0], ewma: [0, 0, 0] }
  const servers = await Promise.all([0, 1, 2].map((i) => startEchoServer(t, (call, cb) => {
    served[call.request.message.startsWith('rr') ? 'rr' : 'ewma'][i]++
    cb(null, { message: `${i}:${call.request.message}` })
  })))
  const workloads = Object.fromEntries([['client', { appPorts: [1] }], ...servers.map((s, i) => [`g${i}`, { appPorts: [{ port: s.port, protocol: 'grpc' as const }] }])])
  const endpoints = servers.map((s, i) => ({ workload: `g${i}`, targetPort: s.port }))
  const mesh = await startMesh(t, {
    workloads,
    services: [
      { name: 'echo', port: 50051, protocol: 'grpc', endpoints },
      { name: 'echo-rr', port: 50051, protocol: 'grpc', balancer: 'round-robin', endpoints },
    ],
  })
  const N = 300
  const run = async (authority: string, tag: string): Promise<string[]> => {
    const client = echoClient(t, mesh.sidecar('client'), authority)
    let next = 0
    const errors: string[] = []
    await Promise.all(Array.from({ length: 10 }, async () => {
      while (next < N) {
        next++
        const res = await unary(client, { message: tag })
        if (res.err !== null) errors.push(res.err.message)
      }
    }))
    return errors
  }
  const share = (counts: number[]): string => counts.map((n) => `${n} (${(100 * n / N).toFixed(1)} %)`).join(' / ')

  // Round-robin isolates the property: every call is balanced on its own, whatever the connection.
  const rrErrors = await run('echo-rr.test:50051', 'rr')
  t.comment(`round-robin, one channel, ${N} calls, 10 in flight: ${share(served.rr)}; errors ${rrErrors.length}`)
  t.same(rrErrors, [], 'every call succeeded')
  t.ok(served.rr.every((n) => n / N > 0.2), 'each endpoint served > 20 % of the calls on one channel')

  // The default (P2C peak-EWMA) weighs latency too: a peer still warming up (a fresh process) is
  // rightly sent less for a while, so only "no pinning" is asserted here; the shares are printed.
  const ewmaErrors = await run('echo.test:50051', 'ewma')
  t.comment(`p2c-ewma (default), one channel, ${N} calls, 10 in flight: ${share(served.ewma)}; errors ${ewmaErrors.length}`)
  t.same(ewmaErrors, [], 'every call succeeded')
  t.ok(served.ewma.every((n) => n > 0) && served.ewma.every((n) => n / N < 0.8), 'every endpoint served some, none nearly all')
})
