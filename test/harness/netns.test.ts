// The netns harness itself: pods on a bridge, a relay to a root-namespace service, captures, a non-root uid, and that nothing is left behind.
import t from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { eventually, stopProcess, type Teardown } from './mesh.ts'
import { Fabric, SIDECAR_UID, isAlive, leftovers, netnsSkipReason, waitForListen } from './netns.ts'
import { START_TIMEOUT_MS } from './ready.ts'

const skip = netnsSkipReason()

/** Answers `b <path>` on 0.0.0.0:8080 and [::]:8080; prints a line once both listen. */
const HTTP_SERVER = `
  const http = require('node:http')
  const handler = (req, res) => { req.resume(); req.on('end', () => res.end('b ' + req.url)) }
  let up = 0
  const listening = () => { if (++up === 2) console.log('listening 8080') }
  http.createServer(handler).listen({ port: 8080, host: '0.0.0.0' }, listening)
  http.createServer(handler).listen({ port: 8080, host: '::', ipv6Only: true }, listening)`

/** A TLS server on 0.0.0.0:8443 (key and certificate in argv[1]) offering ALPN `remora-test/1`; answers what it negotiated and the request line. */
const TLS_SERVER = `
  const tls = require('node:tls'), fs = require('node:fs'), dir = process.argv[1]
  tls.createServer({ key: fs.readFileSync(dir + '/key.pem'), cert: fs.readFileSync(dir + '/cert.pem'), ALPNProtocols: ['remora-test/1'] }, (s) => {
    s.once('data', (d) => s.end('alpn=' + s.alpnProtocol + ' ' + String(d).split('\\r\\n')[0]))
  }).listen(8443, '0.0.0.0', () => console.log('listening 8443'))`

const TLS_CLIENT = `
  const tls = require('node:tls')
  const s = tls.connect({ host: process.argv[1], port: 8443, servername: 'web.mesh.test', ALPNProtocols: ['remora-test/1'], rejectUnauthorized: false }, () => {
    s.write('GET /secret HTTP/1.1\\r\\nHost: web\\r\\n\\r\\n')
  })
  let got = ''
  s.on('data', (d) => { got += d })
  s.on('end', () => console.log(got))`

function canReach (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => resolve(false))
  })
}

t.test('pods talk over the bridge, reach a root service through a relay, are captured, run as uid 2102, and leave nothing', { skip }, async (t) => {
  const fabric = await Fabric.create(t, { pods: ['a', 'b'], ipv6: true })
  const { a, b } = fabric.pods
  t.match(a.ip, /^10\.(2[0-4]\d)\.\d+\.2$/)
  t.equal(b.ip, a.ip.replace(/\.2$/, '.3'))
  t.ok(a.ns.startsWith(`remora-${fabric.id}-`), a.ns)

  await t.test('routes: the subnet and the service CIDR on eth0, no default route', async (t) => {
    const routes = await a.run('ip', ['-4', 'route'])
    t.equal(routes.code, 0)
    t.match(routes.stdout, /10\.96\.0\.0\/16 dev eth0/)
    t.notMatch(routes.stdout, /default/)
    const out = await a.run('curl', ['-sS', '-m', '20', 'http://192.0.2.1/'])
    t.equal(out.code, 7, `nothing leaves for the real network: ${out.stderr}`)
  })

  const server = b.node(['-e', HTTP_SERVER])
  await server.waitForLine('listening 8080')
  await waitForListen(a, 8080, { host: b.ip })

  await t.test('pod a reaches pod b over HTTP, and a capture on a sees it in plaintext', async (t) => {
    const capture = await fabric.capture(a, 'tcp port 8080')
    const r = await a.run('curl', ['-sS', '-m', '30', `http://${b.ip}:8080/hello`])
    t.same({ code: r.code, stdout: r.stdout, stderr: r.stderr }, { code: 0, stdout: 'b /hello', stderr: '' })
    const seen = await capture.stop()
    t.ok(seen.includes(`GET /hello HTTP/1.1\r\nHost: ${b.ip}:8080`), 'the request, in plaintext')
    t.ok(seen.includes('b /hello'), 'the answer')
    t.match(await seen.text(), /GET \/hello HTTP\/1\.1/)
    t.notMatch(await seen.text(), /remora-capture-sync/, 'the sync packet is left out')
    t.ok(seen.streams().some((s) => s.src === a.ip && s.dst === b.ip && s.dport === 8080 && s.data.toString().startsWith('GET /hello ')))
  })

  await t.test('IPv6 (ULA) between pods', async (t) => {
    const r = await a.run('curl', ['-sS', '-g', '-m', '30', `http://[${b.ip6}]:8080/six`])
    t.same({ code: r.code, stdout: r.stdout }, { code: 0, stdout: 'b /six' }, r.stderr)
  })

  await t.test('TLS: the capture shows the ClientHello (SNI, ALPN) and no plaintext request', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'remora-netns-tls-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', '/CN=web.mesh.test', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' })
    const tlsServer = b.node(['-e', TLS_SERVER, dir])
    await tlsServer.waitForLine('listening 8443')
    const capture = await fabric.capture(a, 'tcp port 8443')
    const r = await a.run(process.execPath, ['-e', TLS_CLIENT, b.ip])
    t.equal(r.stdout.trim(), 'alpn=remora-test/1 GET /secret HTTP/1.1', r.stderr)
    const seen = await capture.stop()
    const hellos = seen.clientHellos()
    t.equal(hellos.length, 1)
    t.match(hellos[0], { src: a.ip, dst: b.ip, dport: 8443, sni: 'web.mesh.test', alpn: ['remora-test/1'] })
    t.ok(seen.includes('remora-test/1'))
    t.notOk(seen.includes('GET /secret'), 'no plaintext request')
    t.notOk(seen.includes('alpn='), 'no plaintext answer')
  })

  const redis = await canReach(6379) ? false : 'nothing listens on 127.0.0.1:6379 in the root namespace'
  await t.test('a relay on the bridge reaches Redis on the root namespace\'s 127.0.0.1:6379', { skip: redis }, async (t) => {
    const relay = await fabric.forward({ host: '127.0.0.1', port: 6379 })
    t.equal(relay.host, fabric.bridgeIp)
    const r = await a.run('redis-cli', ['-h', relay.host, '-p', String(relay.port), 'PING'])
    t.same({ code: r.code, stdout: r.stdout.trim() }, { code: 0, stdout: 'PONG' }, r.stderr)
  })

  await t.test(`processes run as uid ${SIDECAR_UID}, and Node can read the repository as it`, async (t) => {
    const id = await a.run('id', ['-u'], { uid: SIDECAR_UID })
    t.equal(id.stdout.trim(), String(SIDECAR_UID))
    const groups = await a.run('id', ['-G'], { uid: SIDECAR_UID })
    t.equal(groups.stdout.trim(), String(SIDECAR_UID))
    const node = a.node(['-p', 'process.getuid() + " " + require("node:fs").readFileSync("src/cli.ts").length'], { uid: SIDECAR_UID })
    const line = await node.waitForLine(/^\d+ \d+$/)
    t.equal(line.split(' ')[0], String(SIDECAR_UID))
  })

  // Processes the teardown must kill: a group leader and its background child.
  const shell = a.spawn('sh', ['-c', 'sleep 1000 & echo "child $!"; wait'])
  const child = Number((await shell.waitForLine(/^child \d+$/)).split(' ')[1])
  t.ok(isAlive(child) && shell.pid !== undefined && isAlive(shell.pid))

  await fabric.destroy()
  t.same(leftovers(fabric.id), { namespaces: [], links: [] }, 'no namespace, veth or bridge left')
  t.equal(server.exitCode ?? server.signalCode, 'SIGTERM')
  // A killed process is gone a moment after the signal; no event says when for one that is not our child.
  await eventually(() => !isAlive(child), START_TIMEOUT_MS, `the background sleep (pid ${child}) is gone`)
  t.throws(() => a.spawn('true'), /torn down/)
})

/** A separate Node process that builds a fabric (with a process in it), prints its id, then exits (`exit`) or waits to be killed (`wait`). */
async function fabricInChild (t: Teardown, mode: 'exit' | 'wait'): Promise<{ id: number, sleep: number, proc: ReturnType<typeof spawn> }> {
  const script = `
    const { Fabric } = await import(process.argv[1])
    const fabric = await Fabric.create({ teardown () {} }, { pods: ['x', 'y'] })
    const sleep = fabric.pods.x.spawn('sleep', ['1000'])
    console.log(JSON.stringify({ id: fabric.id, sleep: sleep.pid }))
    if (process.argv[2] === 'exit') process.exit(0)`
  const proc = spawn(process.execPath, ['--input-type=module', '-e', script, new URL('./netns.ts', import.meta.url).pathname, mode], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => stopProcess(proc, 'SIGKILL'))
  let out = ''
  const line = await new Promise<string>((resolve, reject) => {
    proc.stdout.on('data', (c: Buffer) => { out += c.toString(); if (out.includes('\n')) resolve(out.split('\n')[0]) })
    proc.once('exit', (code) => { if (!out.includes('\n')) reject(new Error(`the child exited with ${code}: ${out}`)) })
  })
  return { ...JSON.parse(line) as { id: number, sleep: number }, proc }
}

t.test('a process that exits without teardown cleans up in its exit hook', { skip }, async (t) => {
  const { id, proc } = await fabricInChild(t, 'exit')
  if (proc.exitCode === null) await new Promise((resolve) => proc.once('exit', resolve))
  t.same(leftovers(id), { namespaces: [], links: [] })
})

t.test('leftovers of a killed run are removed by the next Fabric.create', { skip }, async (t) => {
  const { id, sleep, proc } = await fabricInChild(t, 'wait')
  const exited = new Promise((resolve) => proc.once('exit', resolve))
  proc.kill('SIGKILL')
  await exited
  const before = leftovers(id)
  // Another test process may have cleaned it up first, in its own Fabric.create.
  if (before.namespaces.length === 0) t.comment('already cleaned up by another process')
  else t.same(before, { namespaces: [`remora-${id}-x`, `remora-${id}-y`], links: [`rmr${id}b`, `rmr${id}p0`, `rmr${id}p1`] }, 'left behind')
  const fabric = await Fabric.create(t, { pods: ['z'] })
  t.same(leftovers(id), { namespaces: [], links: [] }, 'removed')
  // Its sleep got the parent-death signal (or the cleanup's SIGKILL).
  await eventually(() => !isAlive(sleep), START_TIMEOUT_MS, `the killed run's sleep (pid ${sleep}) is gone`)
  t.equal((await fabric.pods.z.run('true')).code, 0)
})
