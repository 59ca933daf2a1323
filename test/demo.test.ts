// `npm start` as a newcomer runs it: the demo mesh comes up, traffic flows through two sidecars
// (HTTP/1.1 in, gRPC between web and greeter), the printed curl works, every request is one trace
// in the collector from the client's sidecar to greeter's, and it stops cleanly.
import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { CLI, eventually } from './harness/mesh.ts'
import { startReceiver, type ReceivedSpan } from './harness/otlp.ts'

t.test('remora demo: traffic flows, one trace per request, the printed curl works, Ctrl-C stops every process', async (t) => {
  const logs = mkdtempSync(join(tmpdir(), 'remora-demo-test-'))
  const receiver = await startReceiver(t)
  const env = { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: '100' }
  const demo = spawn(process.execPath, [CLI, 'demo', '--duration', '60s', '--logs', logs], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  demo.stdout.on('data', (c: Buffer) => { out += c.toString() })
  demo.stderr.on('data', (c: Buffer) => { out += c.toString() })
  t.teardown(() => { demo.kill('SIGKILL') })
  await eventually(() => /traffic: 1\/1 ok/.test(out) || demo.exitCode !== null, 30_000, 'first demo request')
  t.match(out, /traffic: 1\/1 ok\s+— first answer: Hello, demo-1!/, 'the traffic loop got a greeting from greeter via web')

  // The first request as Jaeger would show it: one trace, client's sidecar → web's → greeter's.
  const complete = (): ReceivedSpan[] | undefined => {
    const root = receiver.spans.find((s) => s.service === 'client' && s.parentSpanId === '' && s.attributes['url.path'] === '/hello')
    const trace = receiver.spans.filter((s) => s.traceId === root?.traceId)
    return trace.some((s) => s.service === 'greeter') && trace.length >= 6 ? trace : undefined
  }
  await eventually(() => complete() !== undefined, 30_000, 'a whole trace from client to greeter in the collector')
  const trace = complete() ?? []
  const span = (service: string, kind: number): ReceivedSpan | undefined => trace.find((s) => s.service === service && s.kind === kind)
  const clientRequest = span('client', 1)
  const clientAttempt = span('client', 3)
  const webServer = span('web', 2)
  const webRequest = span('web', 1)
  const webAttempt = span('web', 3)
  const greeterServer = span('greeter', 2)
  t.equal(trace.length, 6, 'six spans: two sidecars with a request and an attempt span, two with a SERVER span')
  t.equal(clientRequest?.parentSpanId, '', 'the client\'s sidecar starts the trace')
  t.equal(clientAttempt?.parentSpanId, clientRequest?.spanId)
  t.equal(webServer?.parentSpanId, clientAttempt?.spanId, 'web\'s sidecar continues it')
  t.equal(webRequest?.parentSpanId, webServer?.spanId, 'web forwarded the trace context to its gRPC call')
  t.equal(webAttempt?.parentSpanId, webRequest?.spanId)
  t.equal(greeterServer?.parentSpanId, webAttempt?.spanId, 'greeter\'s sidecar ends it')
  t.equal(greeterServer?.name, 'demo.Greeter/SayHello')
  t.ok(trace.every((s) => s.resource['service.namespace'] === 'demo'), 'every span names the demo namespace')

  const curl = out.match(/curl -x (http:\/\/127\.0\.0\.1:\d+) 'http:\/\/web\.demo\/hello\?name=you'/)
  t.ok(curl, 'the demo prints a curl line to try')
  const { stdout } = await promisify(execFile)('curl', ['-sS', '-x', curl?.[1] ?? '', 'http://web.demo/hello?name=you'])
  t.match(stdout, /^Hello, you!\n {2}web pid \d+ asked greeter over gRPC; greeter pid \d+/)

  // Between sidecars it is mTLS only: the printed plaintext curl to web's inbound port is refused.
  const plain = out.match(/curl -H 'Host: web' (http:\/\/127\.0\.0\.1:\d+)\/hello +# plaintext/)
  t.ok(plain, 'the demo prints the plaintext curl')
  const refused = await promisify(execFile)('curl', ['-sS', '-i', '-H', 'Host: web', `${plain?.[1] ?? ''}/hello`])
  t.match(refused.stdout, /^HTTP\/1\.1 403[\s\S]*remora-proxy-error: mtls required/i)

  const exited = new Promise<number | null>((resolve) => demo.once('exit', (code) => resolve(code)))
  demo.kill('SIGINT')
  t.equal(await exited, 0)
  // Every request counted, the last one's answer included (it used to print n-1/n when stopped mid-request).
  const stopping = out.match(/demo: stopping \((\d+)\/(\d+) requests ok\)/)
  t.ok(stopping !== null && stopping[1] === stopping[2], `every request ok: ${stopping?.[0] ?? 'no stopping line'}`)
  t.match(out, /demo: stopped/)
  for (const port of [15012, 15014, 15101, 15106, 15206, 15301, 18080, 18081]) {
    const free = await new Promise<boolean>((resolve) => {
      const s = net.createServer().once('error', () => resolve(false)).listen(port, '127.0.0.1', () => s.close(() => resolve(true)))
    })
    t.ok(free, `port ${port} released`)
  }
})
