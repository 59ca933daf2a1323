// Black-box resilience, retries: real apps that fail on purpose behind their own sidecars. A bad
// endpoint is ejected and its failures retried within the budget; a POST is never replayed after
// it reached the app, but is after a refused connection; an outage is not multiplied by retries;
// the access log and /metrics show what happened.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import http from 'node:http'
import http2 from 'node:http2'
import { once } from 'node:events'
import { eventually, freePort, startMesh } from '../harness/mesh.ts'
import { startApp } from '../harness/apps.ts'
import { drive, pool, Seen, tally } from '../harness/load.ts'
import { metric } from '../harness/metrics.ts'

t.test('one endpoint of three answers 503 to everything: ejected, its failures retried, attempts ≤ 1.2 × requests', async (t) => {
  const seen = { a: new Seen(), b: new Seen(), c: new Seen() }
  const ok = (name: 'a' | 'b') => startApp(t, (req, res) => { seen[name].note(req); req.resume(); res.end(name) })
  const a = await ok('a')
  const b = await ok('b')
  const c = await startApp(t, (req, res) => { seen.c.note(req); req.resume(); res.writeHead(503).end('down') })
  const mesh = await startMesh(t, {
    workloads: { client: { appPorts: [1] }, a: { appPorts: [a.port] }, b: { appPorts: [b.port] }, c: { appPorts: [c.port] } },
    services: [{
      name: 'web',
      port: 80,
      retry: { on: ['gateway-error'] },
      endpoints: [{ workload: 'a', targetPort: a.port }, { workload: 'b', targetPort: b.port }, { workload: 'c', targetPort: c.port }],
    }],
  })
  const client = mesh.sidecar('client')
  const N = 2000
  const outcomes = await drive(pool(t, client.proxyUrl, 20), 'web', N, 20)
  const okCount = outcomes.filter((o) => o.status === 200).length
  const attempts = seen.a.requests + seen.b.requests + seen.c.requests
  t.comment(`outcomes ${JSON.stringify(tally(outcomes))}; attempts a=${seen.a.requests} b=${seen.b.requests} c=${seen.c.requests} total=${attempts} (${(attempts / N).toFixed(3)} × requests)`)
  t.comment(`remora-attempt at a: ${JSON.stringify(Object.fromEntries(seen.a.attempts))}, b: ${JSON.stringify(Object.fromEntries(seen.b.attempts))}`)
  t.ok(okCount / N >= 0.999, `${(100 * okCount / N).toFixed(2)} % success seen by the client (≥ 99.9 %)`)
  t.ok(attempts <= 1.2 * N, `${attempts} upstream attempts ≤ ${1.2 * N}`)
  t.ok(seen.c.requests < 0.1 * N, `the bad endpoint got ${seen.c.requests} of ${N} attempts once ejected`)
  const ejections = await metric(client.adminUrl, 'remora_endpoint_ejections_total')
  t.comment(`remora_endpoint_ejections_total = ${ejections}`)
  const logged = client.logs().filter((l) => l.msg === 'endpoint ejected after consecutive failures')
  for (const l of logged) t.comment(`${String(l.time)} ejected for ${String(l.ejected_for_ms)} ms (ejection ${String(l.ejections)}, ${String(l.consecutive_failures)} consecutive failures)`)
  const times = logged.map((l) => Date.parse(String(l.time)))
  // Each later ejection follows a failed probe, sent when the previous one ended (≥ 0.75 × 1 s, jittered).
  t.ok(times.every((at, i) => i === 0 || at - times[i - 1] >= 700), 'failures in flight at the ejection do not extend it; only failed probes do')
  t.ok(ejections >= 1, 'failure accrual ejected the bad endpoint')
})

t.test('POST: a 503 from the app is not replayed; a refused connection is, with the body intact', async (t) => {
  const once = new Seen()
  const failing = await startApp(t, (req, res) => { once.note(req); req.resume(); req.on('end', () => res.writeHead(503).end('busy')) })
  const healthySeen = new Seen()
  const bodies: Array<{ attempt: number, sha: string, bytes: number }> = []
  const healthy = await startApp(t, (req, res) => {
    const attempt = healthySeen.note(req)
    const hash = createHash('sha256')
    let bytes = 0
    req.on('data', (c: Buffer) => { hash.update(c); bytes += c.length })
    req.on('end', () => { const sha = hash.digest('hex'); bodies.push({ attempt, sha, bytes }); res.end(sha) })
  })
  const mesh = await startMesh(t, {
    workloads: { client: { appPorts: [1] }, failing: { appPorts: [failing.port] }, healthy: { appPorts: [healthy.port] }, ghost: { appPorts: [1] } },
    services: [
      { name: 'once', port: 80, retry: { on: ['gateway-error', '5xx', 'reset'] }, endpoints: [{ workload: 'failing', targetPort: failing.port }] },
      // ghost's sidecar never starts: connecting to it is refused, so the request surely never reached an app.
      { name: 'web', port: 80, retry: { on: ['gateway-error'] }, endpoints: [{ workload: 'ghost', targetPort: 1 }, { workload: 'healthy', targetPort: healthy.port }] },
    ],
  }, { only: ['client', 'failing', 'healthy'] })
  const client = mesh.sidecar('client')
  const p = pool(t, client.proxyUrl, 5)

  const posts = await drive(p, 'once', 30, 5, { method: 'POST', body: (i) => `order ${i}` })
  t.comment(`POST to a 503 endpoint: ${JSON.stringify(tally(posts))}; the app saw ${once.requests} requests, remora-attempt ${JSON.stringify(Object.fromEntries(once.attempts))}`)
  t.equal(once.requests, 30, 'the app saw exactly one attempt per POST')
  t.same(Object.fromEntries(once.attempts), { 1: 30 }, 'every one was attempt 1')
  t.ok(posts.every((o) => o.status === 503 && o.proxyError === undefined && o.body === 'busy'), "the client got the app's own 503")

  const sent = Array.from({ length: 40 }, (_, i) => randomBytes(32 * 1024 + i))
  const shaOf = (b: Buffer): string => createHash('sha256').update(b).digest('hex')
  const retried = await drive(p, 'web', sent.length, 5, { method: 'POST', body: (i) => sent[i] })
  const bad = retried.filter((o, i) => o.status !== 200 || o.body !== shaOf(sent[i]))
  t.comment(`POST with one endpoint refusing connections: ${JSON.stringify(tally(retried))}; healthy app saw remora-attempt ${JSON.stringify(Object.fromEntries(healthySeen.attempts))}`)
  t.equal(bad.length, 0, 'every POST succeeded and the app hashed exactly the body sent')
  t.equal(healthySeen.requests, sent.length, 'the healthy app saw each POST once')
  const replays = bodies.filter((b) => b.attempt > 1)
  t.ok(replays.length >= 1, `${replays.length} POST(s) were retried after a refused connection (always safe)`)
  t.ok(replays.every((r) => sent.some((s) => s.length === r.bytes && shaOf(s) === r.sha)), 'replayed bodies arrived whole (32 KiB+, under the 64 KiB replay limit)')
})

t.test('an h2 caller\'s POST, retried after a refused connection, reaches the app with its body intact', async (t) => {
  // An h2 caller's request travels as an h2 stream between sidecars: its replayable copy is written
  // straight into each attempt's stream (no stream of its own), and a second attempt gets it whole.
  const seen = new Seen()
  const bodies: Array<{ attempt: number, sha: string }> = []
  const healthy = await startApp(t, (req, res) => {
    const attempt = seen.note(req)
    const hash = createHash('sha256')
    req.on('data', (c: Buffer) => hash.update(c))
    req.on('end', () => { const sha = hash.digest('hex'); bodies.push({ attempt, sha }); res.end(sha) })
  })
  const mesh = await startMesh(t, {
    workloads: { client: { appPorts: [1] }, healthy: { appPorts: [healthy.port] }, ghost: { appPorts: [1] } },
    services: [{ name: 'web', port: 80, retry: { on: ['gateway-error'] }, endpoints: [{ workload: 'ghost', targetPort: 1 }, { workload: 'healthy', targetPort: healthy.port }] }],
  }, { only: ['client', 'healthy'] })
  const session = http2.connect(mesh.sidecar('client').proxyUrl)
  session.on('error', () => {})
  t.teardown(() => session.close())
  const post = async (body: Buffer): Promise<{ status: number, text: string }> => {
    const stream = session.request({ ':method': 'POST', ':path': '/order', ':authority': 'web' })
    // Written in pieces, so the body is still arriving when the first attempt is refused.
    for (let i = 0; i < body.length; i += 8192) stream.write(body.subarray(i, i + 8192))
    stream.end()
    const [head] = await once(stream, 'response') as [http2.IncomingHttpHeaders]
    let text = ''
    for await (const c of stream) text += String(c)
    return { status: Number(head[':status']), text }
  }
  const sent = Array.from({ length: 20 }, (_, i) => randomBytes(40 * 1024 + i))
  const answers = await Promise.all(sent.map((b) => post(b)))
  const shaOf = (b: Buffer): string => createHash('sha256').update(b).digest('hex')
  t.same(answers.map((a) => a.status), sent.map(() => 200), 'every POST answered 200')
  t.ok(answers.every((a, i) => a.text === shaOf(sent[i])), 'the app hashed exactly the body sent, every time')
  t.equal(seen.requests, sent.length, 'the app saw each POST once')
  const replays = bodies.filter((b) => b.attempt > 1)
  t.ok(replays.length >= 1, `${replays.length} POST(s) reached the app on a later attempt`)
})

t.test('an upload still arriving when a retry is decided: every caller is answered, the sidecar stays up, no app takes part of a body for all of it', async (t) => {
  // The body is within maxReplayBytes (64 KiB) when an attempt fails and crosses it during the
  // retry's backoff: the retry must still send all of it (or none be retried). Timing decides
  // whether the second piece lands in the backoff, so each caller tries a range of pauses.
  const KiB = 1024
  let put = 0
  // Every first try is answered 503 at once; the retry is read to its end and its size answered.
  const flaky = await startApp(t, (req, res) => {
    if (++put % 2 === 1) { req.resume(); res.writeHead(503).end('try again'); return }
    let bytes = 0
    req.on('data', (c: Buffer) => { bytes += c.length })
    req.on('end', () => res.end(String(bytes)))
  })
  const down = await freePort()
  const mesh = await startMesh(t, {
    workloads: { client: { appPorts: [1] }, flaky: { appPorts: [flaky.port] }, gone: { appPorts: [down] } },
    services: [
      { name: 'flaky', port: 80, retry: { on: ['5xx'] }, endpoints: [{ workload: 'flaky', targetPort: flaky.port }] },
      // gone's app does not listen: its sidecar refuses every attempt as "app unavailable", retried.
      { name: 'gone', port: 80, endpoints: [{ workload: 'gone', targetPort: down }] },
    ],
  })
  const client = mesh.sidecar('client')
  const pauses = Array.from({ length: 12 }, (_, i) => i * 4)

  // HTTP/1.1 caller, chunked PUT (no length the app could check).
  for (const pause of pauses) {
    const res = await new Promise<{ status: number, text: string }>((resolve, reject) => {
      const req = http.request(`${client.proxyUrl}/upload`, { method: 'PUT', headers: { host: 'flaky' } }, (r) => {
        let text = ''
        r.on('data', (c: Buffer) => { text += String(c) })
        r.on('end', () => resolve({ status: r.statusCode ?? 0, text }))
      })
      req.once('error', reject)
      req.write(Buffer.alloc(60 * KiB))
      setTimeout(() => req.end(Buffer.alloc(16 * KiB)), pause)
    })
    if (res.status === 200) t.equal(res.text, String(76 * KiB), `HTTP/1.1, second piece after ${pause} ms: the app read the whole body`)
    else t.equal(res.status, 503, `HTTP/1.1, second piece after ${pause} ms: not retried, the app's own 503`)
  }

  // h2 caller to an app that is down: each attempt refused, retried while the body is replayable.
  const session = http2.connect(client.proxyUrl)
  // Only when the sidecar fails (the assertions below say so): a reset connection.
  session.on('error', () => {})
  t.teardown(() => session.destroy())
  for (const pause of pauses) {
    const stream = session.request({ ':method': 'POST', ':path': '/upload', ':authority': 'gone' })
    stream.on('error', () => {})
    stream.write(Buffer.alloc(60 * KiB))
    setTimeout(() => stream.end(Buffer.alloc(16 * KiB)), pause)
    // A stream that closes unanswered (the sidecar gone) fails the test at once rather than hanging it.
    const head = await new Promise<http2.IncomingHttpHeaders | undefined>((resolve) => {
      stream.once('response', resolve)
      stream.once('close', () => resolve(undefined))
    })
    stream.resume()
    if (!stream.closed) await once(stream, 'close')
    t.equal(head?.['remora-proxy-error'], 'app unavailable', `h2, second piece after ${pause} ms: answered (503, app unavailable)`)
    if (head === undefined) break
  }
  session.close()
  t.equal(client.proc.exitCode, null, 'the client sidecar is still running')
  t.notMatch(client.output, /"level":"fatal"/, 'and logged nothing fatal')
})

t.test('a caller answered while it is still uploading has the rest read and dropped: its request ends', async (t) => {
  // Nothing listens at the endpoint: every attempt is refused and the caller gets a 502 while it is
  // still sending. Then it sends 400 KiB more, far past any buffer, and ends: the sidecar must read
  // it (else the request stays in flight for good, with no access-log line).
  const KiB = 1024
  const nobody = await freePort()
  const mesh = await startMesh(t, {
    workloads: { client: { appPorts: [1] } },
    services: [
      { name: 'retried', port: 80, endpoints: [{ address: `127.0.0.1:${nobody}`, targetPort: 8080 }] },
      { name: 'once', port: 80, retry: { attempts: 1 }, endpoints: [{ address: `127.0.0.1:${nobody}`, targetPort: 8080 }] },
    ],
  })
  const client = mesh.sidecar('client')
  const session = http2.connect(client.proxyUrl)
  t.teardown(() => session.destroy())
  for (const service of ['retried', 'once']) {
    const stream = session.request({ ':method': 'POST', ':path': `/late-${service}`, ':authority': service })
    stream.write(Buffer.alloc(60 * KiB))
    const [head] = await once(stream, 'response') as [http2.IncomingHttpHeaders]
    t.equal(head[':status'], 502, `${service}: the caller is answered before it has sent everything`)
    stream.resume()
    stream.end(Buffer.alloc(400 * KiB))
    await once(stream, 'close')
    await eventually(() => client.logs().some((l) => l.path === `/late-${service}`), 30_000, `the access-log line of /late-${service}`)
    const line = client.logs().find((l) => l.path === `/late-${service}`)
    t.match(line, { status: 502, error: 'connect refused', bytes_in: 460 * KiB }, `${service}: the request ended, all of its upload read`)
  }
  t.equal(await metric(client.adminUrl, 'remora_requests_in_flight', { direction: 'outbound' }), 0, 'nothing left in flight')
  session.close()
})

t.test('all endpoints failing: retries stay within the budget, they do not multiply the outage', async (t) => {
  const seen = new Seen()
  const apps = await Promise.all(['a', 'b', 'c'].map(() => startApp(t, (req, res) => { seen.note(req); req.resume(); res.writeHead(503).end('down') })))
  const mesh = await startMesh(t, {
    workloads: { client: { appPorts: [1] }, a: { appPorts: [apps[0].port] }, b: { appPorts: [apps[1].port] }, c: { appPorts: [apps[2].port] } },
    services: [{
      name: 'web',
      port: 80,
      retry: { on: ['gateway-error'], attempts: 3 },
      endpoints: [{ workload: 'a', targetPort: apps[0].port }, { workload: 'b', targetPort: apps[1].port }, { workload: 'c', targetPort: apps[2].port }],
    }],
  })
  const client = mesh.sidecar('client')
  const N = 1500
  const started = performance.now()
  const startedWall = Date.now()
  const outcomes = await drive(pool(t, client.proxyUrl, 20), 'web', N, 20)
  const seconds = (performance.now() - started) / 1000
  // The budget: 20 % of the requests plus 10/s, over its 10 s window. It counts in whole seconds of
  // the wall clock: a run that spans more of them than one window (on a busy machine) may spend the
  // 10/s × 10 s reserve once a window.
  const windows = Math.ceil((Math.floor(Date.now() / 1000) - Math.floor(startedWall / 1000) + 1) / 10)
  const bound = 1.2 * N + 10 * 10 * windows
  const retries = await metric(client.adminUrl, 'remora_retries_total')
  t.comment(`${N} requests in ${seconds.toFixed(2)} s: ${JSON.stringify(tally(outcomes))}; upstream attempts ${seen.requests} (${(seen.requests / N).toFixed(3)} × requests), remora-attempt ${JSON.stringify(Object.fromEntries(seen.attempts))}; remora_retries_total ${retries}; bound ${bound}`)
  t.ok(seen.requests <= bound, `${seen.requests} attempts ≤ 1.2 × ${N} + 10/s × 10 s × ${windows} window(s) = ${bound}`)
  t.ok(seen.requests < 3 * N * 0.5, 'far fewer than attempts × requests')
  t.equal(outcomes.filter((o) => o.status === 503).length, N, 'the client sees the 503s, not a hang')
})

t.test('a retried request: the access log lists attempts and why, /metrics counts retries and ejections', async (t) => {
  const good = await startApp(t, (req, res) => { req.resume(); res.end('ok') })
  const bad = await startApp(t, (req, res) => { req.resume(); res.writeHead(503).end('down') })
  const mesh = await startMesh(t, {
    workloads: { client: { appPorts: [1] }, good: { appPorts: [good.port] }, bad: { appPorts: [bad.port] } },
    services: [{
      name: 'web',
      port: 80,
      retry: { on: ['gateway-error'] },
      circuitBreaker: { consecutiveFailures: 3 },
      endpoints: [{ workload: 'good', targetPort: good.port }, { workload: 'bad', targetPort: bad.port }],
    }],
  })
  const client = mesh.sidecar('client')
  const outcomes = await drive(pool(t, client.proxyUrl, 2), 'web', 60, 2)
  t.same(tally(outcomes), { 200: 60 }, 'every request succeeded')
  await new Promise((resolve) => setTimeout(resolve, 200))
  const lines = client.logs().filter((l) => l.access === 'outbound' && l.authority === 'web')
  const retried = lines.filter((l) => typeof l.attempts === 'number' && l.attempts > 1)
  t.ok(lines.length >= 60, `${lines.length} access log lines`)
  t.ok(retried.length >= 1, `${retried.length} line(s) of retried requests`)
  const line = retried[0]
  t.comment(`access log line of a retried request: ${JSON.stringify(line)}`)
  t.equal(line?.attempts, 2)
  t.match(line?.retried, [/^127\.0\.0\.1:\d+\/\d+: status 503$/], 'retried names the endpoint and why it failed')
  t.equal(line?.status, 200)
  const ejections = client.logs().filter((l) => l.msg === 'endpoint ejected after consecutive failures')
  t.comment(`ejection log lines: ${ejections.length} ${JSON.stringify(ejections[0])}`)
  t.ok(ejections.length >= 1, 'the ejection is logged')
  const text = await (await fetch(`${client.adminUrl}/metrics`)).text()
  const shown = text.split('\n').filter((l) => /^remora_(retries|endpoint_ejections)_total\{/.test(l))
  t.comment(shown.join('\n'))
  t.ok(await metric(client.adminUrl, 'remora_retries_total', { authority: 'web.test:80' }) >= retried.length, 'remora_retries_total counts the retries')
  t.ok(await metric(client.adminUrl, 'remora_endpoint_ejections_total') >= 1, 'remora_endpoint_ejections_total counts the ejection')
})
