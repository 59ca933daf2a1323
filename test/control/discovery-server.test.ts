// The discovery API over real HTTP/2: snapshot then deltas per watch, absent → snapshot when a service
// appears, errors for bad requests, and a cancelled watch leaves nothing behind.
import t from 'tap'
import http2 from 'node:http2'
import { mkdtempSync, renameSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { stringify } from 'yaml'
import { startControl, type ControlPlane } from '../../src/control/plane.ts'
import type { WatchMessage } from '../../src/discovery/wire.ts'
import { eventually, type Teardown } from '../harness/mesh.ts'
import { Catalog, type CatalogSource } from '../../src/control/catalog.ts'

const log = pino({ level: 'silent' })

function meshText (endpoints: string[], extra: Array<{ name: string, port: number }> = []): string {
  return stringify({
    services: [
      { name: 'web', namespace: 'demo', port: 80, endpoints: endpoints.map((address) => ({ address, targetPort: 8080 })) },
      ...extra.map((s) => ({ name: s.name, namespace: 'demo', port: s.port, endpoints: [{ address: '10.0.0.9:15006', targetPort: 9 }] })),
    ],
  })
}

async function plane (t: Teardown, text: string): Promise<{ cp: ControlPlane, file: string, url: string }> {
  const file = join(mkdtempSync(join(tmpdir(), 'remora-cp-')), 'mesh.yaml')
  writeFileSync(file, text)
  const cp = await startControl({ source: 'file', meshFile: file, discoveryAddr: { host: '127.0.0.1', port: 0 }, adminAddr: { host: '127.0.0.1', port: 0 }, trustDomain: 'cluster.local', proxyInboundPort: 15006, ca: { kind: 'off' }, certTtlMs: 86_400_000, servingNames: ['localhost'] }, log)
  t.teardown(() => cp.shutdown('test over'))
  await cp.synced
  return { cp, file, url: `http://127.0.0.1:${cp.addresses.discovery.port}` }
}

function rewrite (file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text)
  renameSync(`${file}.tmp`, file)
}

interface Watch { messages: WatchMessage[], status: Promise<number>, stream: http2.ClientHttp2Stream, body: () => string }

function watch (session: http2.ClientHttp2Session, authority: string): Watch {
  const stream = session.request({ ':path': `/v1/watch?authority=${encodeURIComponent(authority)}` })
  const messages: WatchMessage[] = []
  let text = ''
  stream.setEncoding('utf8')
  stream.on('data', (c: string) => {
    text += c
    const lines = text.split('\n')
    text = lines.pop() ?? ''
    for (const l of lines) if (l.startsWith('{"type"')) messages.push(JSON.parse(l) as WatchMessage)
  })
  stream.on('error', () => {})
  const status = new Promise<number>((resolve) => stream.once('response', (h) => resolve(Number(h[':status']))))
  return { messages, status, stream, body: () => text }
}

t.test('a watch gets a snapshot, then only what changed, in version order', async (t) => {
  const { cp, file, url } = await plane(t, meshText(['10.0.0.1:15006', '10.0.0.2:15006']))
  const session = http2.connect(url)
  t.teardown(() => session.destroy())
  const w = watch(session, 'web.demo.svc.cluster.local:80')
  t.equal(await w.status, 200)
  await eventually(() => w.messages.length === 1, 3000, 'snapshot')
  const snap = w.messages[0]
  t.equal(snap.type, 'snapshot')
  if (snap.type !== 'snapshot') return
  t.equal(snap.service.name, 'web')
  t.same(snap.service.endpoints.map((e) => e.address.host), ['10.0.0.1', '10.0.0.2'])

  rewrite(file, meshText(['10.0.0.2:15006', '10.0.0.3:15006']))
  await eventually(() => w.messages.length === 2, 3000, 'delta')
  const d = w.messages[1]
  t.equal(d.type, 'delta')
  if (d.type !== 'delta') return
  t.equal(d.previous, snap.version, 'the delta names the version it follows')
  t.ok(d.version > snap.version)
  t.same(d.add.map((e) => e.address.host), ['10.0.0.3'])
  t.same(d.remove, ['10.0.0.1:15006/8080'])
  t.same(d.update, [])

  // A change to another service is not sent to this watch.
  rewrite(file, meshText(['10.0.0.2:15006', '10.0.0.3:15006'], [{ name: 'other', port: 81 }]))
  await eventually(() => cp.catalog.size === 2, 3000, 'other service loaded')
  t.equal(w.messages.length, 2, 'no message for an unrelated service')
})

t.test('an unknown authority is absent until it appears, and absent again when it goes', async (t) => {
  const { file, url } = await plane(t, meshText(['10.0.0.1:15006']))
  const session = http2.connect(url)
  t.teardown(() => session.destroy())
  const w = watch(session, 'api.demo:8080')
  await eventually(() => w.messages.length === 1, 3000, 'absent')
  t.match(w.messages[0], { type: 'absent', authority: 'api.demo:8080' })
  rewrite(file, meshText(['10.0.0.1:15006'], [{ name: 'api', port: 8080 }]))
  await eventually(() => w.messages.length === 2, 3000, 'snapshot after it appears')
  t.match(w.messages[1], { type: 'snapshot', service: { name: 'api', port: 8080 } })
  rewrite(file, meshText(['10.0.0.1:15006']))
  await eventually(() => w.messages.length === 3, 3000, 'absent after removal')
  t.match(w.messages[2], { type: 'absent', authority: 'api.demo:8080' })
})

t.test('a broken mesh file edit keeps the last good catalog, counted as a source error', async (t) => {
  const { cp, file, url } = await plane(t, meshText(['10.0.0.1:15006']))
  const session = http2.connect(url)
  t.teardown(() => session.destroy())
  const w = watch(session, 'web.demo:80')
  await eventually(() => w.messages.length === 1, 3000, 'snapshot')
  rewrite(file, 'services:\n  - name: web\n   port: 80\n')
  await eventually(async () => (await cp.metrics.sourceErrors.get()).values.some((v) => v.value > 0), 3000, 'source error counted')
  t.equal(w.messages.length, 1, 'watchers got nothing from the broken edit')
  t.equal(cp.catalog.lookup('web.demo:80')?.service.endpoints.length, 1, 'the last good service is still served')
  rewrite(file, meshText(['10.0.0.1:15006', '10.0.0.2:15006']))
  await eventually(() => w.messages.length === 2, 3000, 'the next good edit goes out')
  t.match(w.messages[1], { type: 'delta', add: [{ address: { host: '10.0.0.2' } }] })
})

t.test('bad requests get a JSON error naming what to fix', async (t) => {
  const { url } = await plane(t, meshText(['10.0.0.1:15006']))
  const session = http2.connect(url)
  t.teardown(() => session.destroy())
  const cases: Array<[string, number, RegExp]> = [
    ['/v1/watch', 400, /"authority" is required/],
    ['/v1/watch?authority=bad%20name:80', 400, /not a DNS name/],
    ['/v2/things', 404, /GET \/v1\/watch\?authority=/],
  ]
  for (const [path, status, message] of cases) {
    const s = session.request({ ':path': path })
    s.setEncoding('utf8')
    let body = ''
    s.on('data', (c: string) => { body += c })
    const h = await new Promise<http2.IncomingHttpHeaders>((resolve) => s.once('response', resolve))
    await new Promise((resolve) => s.once('end', resolve))
    t.equal(Number(h[':status']), status, path)
    t.match(JSON.parse(body), { error: { message } }, path)
  }
})

t.test('a cancelled watch is forgotten; a watch made before the first sync waits for it', async (t) => {
  const { cp, url } = await plane(t, meshText(['10.0.0.1:15006']))
  const session = http2.connect(url)
  t.teardown(() => session.destroy())
  const w = watch(session, 'web.demo:80')
  await eventually(() => w.messages.length === 1, 3000, 'snapshot')
  t.equal(await cp.metrics.watchers.get().then((m) => m.values[0].value), 1)
  w.stream.close(http2.constants.NGHTTP2_CANCEL)
  await eventually(async () => (await cp.metrics.watchers.get()).values[0].value === 0, 3000, 'watch forgotten')

  // A source that has not synced yet: the watch is answered only once it has.
  let release: () => void = () => {}
  const slow: CatalogSource = {
    name: 'slow',
    start: async (catalog: Catalog) => { await new Promise<void>((resolve) => { release = resolve }); catalog.markSynced() },
    stop: async () => {},
  }
  const cp2 = await startControl({ source: 'file', meshFile: undefined, discoveryAddr: { host: '127.0.0.1', port: 0 }, adminAddr: { host: '127.0.0.1', port: 0 }, trustDomain: 'cluster.local', proxyInboundPort: 15006, ca: { kind: 'off' }, certTtlMs: 86_400_000, servingNames: ['localhost'] }, log, async () => slow)
  t.teardown(() => cp2.shutdown('test over'))
  const s2 = http2.connect(`http://127.0.0.1:${cp2.addresses.discovery.port}`)
  t.teardown(() => s2.destroy())
  const early = watch(s2, 'web.demo:80')
  t.equal(await early.status, 200)
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.equal(early.messages.length, 0, 'no answer before the source synced')
  const ready = await fetch(`http://127.0.0.1:${cp2.addresses.admin.port}/ready`)
  t.equal(ready.status, 503, '/ready says not yet')
  release()
  await eventually(() => early.messages.length === 1, 3000, 'answer after sync')
  t.match(early.messages[0], { type: 'absent' })
})
