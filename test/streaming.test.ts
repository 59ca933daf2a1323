// Black-box: bodies stream through two sidecars with backpressure — a 1 GiB upload and download
// arrive byte-exact while both sidecars' memory stays flat (no buffering of whole bodies).
import t from 'tap'
import { readFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { request } from 'undici'
import { startMesh, type SidecarProcess } from './harness/mesh.ts'
import { startApp } from './harness/apps.ts'

const GiB = 1024 ** 3
const CHUNK = Buffer.alloc(1024 * 1024, 'remora streams bodies ')

function rssOf (pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m === null ? 0 : Number(m[1]) * 1024
}

/** Samples each sidecar's RSS until stopped; returns the growth over the starting value. */
function watchMemory (sidecars: SidecarProcess[]): () => number[] {
  const base = sidecars.map((s) => rssOf(s.proc.pid as number))
  const peak = [...base]
  const timer = setInterval(() => sidecars.forEach((s, i) => { peak[i] = Math.max(peak[i], rssOf(s.proc.pid as number)) }), 50)
  return () => { clearInterval(timer); return peak.map((p, i) => p - base[i]) }
}

function gibibyte (): Readable {
  let sent = 0
  return new Readable({
    read () {
      if (sent >= GiB) { this.push(null); return }
      sent += CHUNK.length
      this.push(CHUNK)
    },
  })
}

t.test('1 GiB up and 1 GiB down through two sidecars: exact bytes, flat memory', async (t) => {
  const app = await startApp(t, (req, res) => {
    if (req.method === 'POST') {
      const hash = createHash('sha256')
      let n = 0
      req.on('data', (c: Buffer) => { n += c.length; hash.update(c) })
      req.on('end', () => res.end(`${n} ${hash.digest('hex')}`))
      return
    }
    res.writeHead(200, { 'content-length': String(GiB) })
    gibibyte().pipe(res)
  })
  const mesh = await startMesh(t, {
    workloads: { client: { appPorts: [1] }, web: { appPorts: [app.port] } },
    services: [{ name: 'web', port: 80, endpoints: [{ workload: 'web', targetPort: app.port }] }],
  }, { env: { REMORA_ACCESS_LOG: 'off' } })
  const sidecars = [mesh.sidecar('client'), mesh.sidecar('web')]
  const expected = createHash('sha256')
  for (let i = 0; i < GiB / CHUNK.length; i++) expected.update(CHUNK)
  const digest = expected.digest('hex')

  let stop = watchMemory(sidecars)
  const up = await request(`${sidecars[0].proxyUrl}/upload`, { method: 'POST', headers: { host: 'web' }, body: gibibyte() })
  t.equal(await up.body.text(), `${GiB} ${digest}`, 'the app received exactly the bytes sent (chunked, no content-length)')
  let growth = stop()
  t.ok(growth.every((g) => g < 128 * 1024 * 1024), `upload: sidecar RSS growth ${growth.map((g) => `${(g / 2 ** 20).toFixed(0)} MiB`).join(', ')} stays far below the body size`)

  stop = watchMemory(sidecars)
  const down = await request(`${sidecars[0].proxyUrl}/download`, { headers: { host: 'web' } })
  t.equal(down.headers['content-length'], String(GiB))
  const hash = createHash('sha256')
  let n = 0
  for await (const c of down.body) { n += (c as Buffer).length; hash.update(c as Buffer) }
  growth = stop()
  t.equal(n, GiB)
  t.equal(hash.digest('hex'), digest, 'downloaded bytes are exact')
  t.ok(growth.every((g) => g < 128 * 1024 * 1024), `download: sidecar RSS growth ${growth.map((g) => `${(g / 2 ** 20).toFixed(0)} MiB`).join(', ')}`)
})
