// The rules really redirect: a pod namespace and a peer namespace joined by a veth; connections land where the rules say.
import t from 'tap'
import { BACKENDS } from '../../src/init/iptables.ts'
import { inNetns, Lines, netns, remoraInit, whyNoBackend, whyNoNetns } from './netns.ts'

const noNetns = await whyNoNetns()
const POD = '10.233.0.1'
const PEER = '10.233.0.2'

/** Listens on the given ports (all addresses); prints `ready`, then one JSON line per connection accepted. */
const RECORDER = `const net = require('node:net'); const ports = process.argv.slice(1).map(Number); let up = 0
for (const port of ports) net.createServer((s) => { console.log(JSON.stringify({ port: s.localPort, local: s.localAddress, from: s.remoteAddress })); s.destroy() })
  .listen(port, '0.0.0.0', () => { if (++up === ports.length) console.log('ready') })`
/** Connects to host:port; prints `connected` or the error code. */
const CLIENT = `const s = require('node:net').connect(Number(process.argv[2]), process.argv[1])
s.on('connect', () => { console.log('connected'); s.end() }); s.on('error', (e) => console.log(e.code))`

const sh = async (ns: string, ...cmd: string[]): Promise<void> => {
  const r = await inNetns(ns, cmd)
  if (r.code !== 0) throw new Error(`${cmd.join(' ')} in ${ns}: ${r.stderr}`)
}

for (const backend of BACKENDS) {
  t.test(`${backend}: outbound lands on 15001 unless from the proxy UID; inbound on 15006 except the admin port`, { skip: noNetns ?? whyNoBackend(backend), timeout: 120_000 }, async (t) => {
    const pod = await netns(t, `pod-${backend}`)
    const peer = await netns(t, `peer-${backend}`)
    await sh(pod, 'ip', 'link', 'set', 'lo', 'up')
    await sh(peer, 'ip', 'link', 'set', 'lo', 'up')
    await sh(pod, 'ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', peer)
    await sh(pod, 'ip', 'addr', 'add', `${POD}/24`, 'dev', 'eth0')
    await sh(peer, 'ip', 'addr', 'add', `${PEER}/24`, 'dev', 'eth0')
    await sh(pod, 'ip', 'link', 'set', 'eth0', 'up')
    await sh(peer, 'ip', 'link', 'set', 'eth0', 'up')

    const init = await remoraInit(pod, ['--iptables', backend, '--ipv6', 'off'])
    t.equal(init.code, 0, init.stderr)

    const inPod = new Lines(t, ['ip', 'netns', 'exec', pod, process.execPath, '-e', RECORDER, '15001', '15006', '15000', '8080'])
    const inPeer = new Lines(t, ['ip', 'netns', 'exec', peer, process.execPath, '-e', RECORDER, '80'])
    t.equal(await inPod.next(), 'ready')
    t.equal(await inPeer.next(), 'ready')
    const connect = async (ns: string, host: string, port: number, as: string[] = []): Promise<string> =>
      (await inNetns(ns, [...as, process.execPath, '-e', CLIENT, host, String(port)])).stdout.trim()
    const next = async (l: Lines): Promise<unknown> => JSON.parse(await l.next())
    const proxyUid = ['setpriv', '--reuid=2102', '--regid=2102', '--clear-groups']

    t.equal(await connect(pod, PEER, 80), 'connected')
    t.same(await next(inPod), { port: 15001, local: '127.0.0.1', from: POD }, "the app's outbound connection lands on the outbound listener (127.0.0.1, where the proxy listens; the source stays the pod IP)")

    t.equal(await connect(pod, PEER, 80, proxyUid), 'connected')
    t.same(await next(inPeer), { port: 80, local: PEER, from: POD }, "the proxy UID's connection goes where it was addressed")
    t.equal(await connect(pod, PEER, 81, proxyUid), 'ECONNREFUSED', 'and is refused there when nothing listens')

    t.equal(await connect(pod, '127.0.0.1', 8080), 'connected')
    t.same(await next(inPod), { port: 8080, local: '127.0.0.1', from: '127.0.0.1' }, 'loopback to loopback is not redirected')

    t.equal(await connect(peer, POD, 8080), 'connected')
    t.same(await next(inPod), { port: 15006, local: POD, from: PEER }, 'inbound to the app port lands on the inbound listener')

    t.equal(await connect(peer, POD, 15000), 'connected')
    t.same(await next(inPod), { port: 15000, local: POD, from: PEER }, 'the admin port is not redirected')
  })
}
