// `npm start` as a newcomer runs it: the demo mesh comes up, traffic flows through two sidecars
// (HTTP/1.1 in, gRPC between web and greeter), the printed curl works, and it stops cleanly.
import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { CLI, eventually } from './harness/mesh.ts'

t.test('remora demo: traffic flows, the printed curl works, Ctrl-C stops every process', async (t) => {
  const logs = mkdtempSync(join(tmpdir(), 'remora-demo-test-'))
  const demo = spawn(process.execPath, [CLI, 'demo', '--duration', '60s', '--logs', logs], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  demo.stdout.on('data', (c: Buffer) => { out += c.toString() })
  demo.stderr.on('data', (c: Buffer) => { out += c.toString() })
  t.teardown(() => { demo.kill('SIGKILL') })
  await eventually(() => /traffic: 1\/1 ok/.test(out) || demo.exitCode !== null, 30_000, 'first demo request')
  t.match(out, /traffic: 1\/1 ok\s+— first answer: Hello, demo-1!/, 'the traffic loop got a greeting from greeter via web')

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
