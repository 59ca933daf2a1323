// Black-box: editing the mesh file moves traffic without a restart and without failed requests;
// a broken edit is logged with file and line, and the last good table keeps serving.
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { Pool } from 'undici'
import { eventually, startMesh, type MeshSpec } from '../harness/mesh.ts'
import { namedApp, startApp } from '../harness/apps.ts'

t.test('mesh file edits move traffic with zero failed requests; a bad edit keeps the last good table', async (t) => {
  const a = await startApp(t, namedApp('a'))
  const b = await startApp(t, namedApp('b'))
  const spec = (target: 'a' | 'b'): MeshSpec => ({
    workloads: { client: { appPorts: [1] }, a: { appPorts: [a.port] }, b: { appPorts: [b.port] } },
    services: [{ name: 'web', port: 80, endpoints: [{ workload: target, targetPort: target === 'a' ? a.port : b.port }] }],
  })
  const mesh = await startMesh(t, spec('a'))
  const client = mesh.sidecar('client')
  const pool = new Pool(client.proxyUrl, { connections: 4 })
  t.teardown(() => pool.close())

  const seen: string[] = []
  const failures: string[] = []
  let running = true
  const loop = (async () => {
    while (running) {
      try {
        const res = await pool.request({ path: '/', method: 'GET', headers: { host: 'web' } })
        const body = await res.body.text()
        if (res.statusCode !== 200) failures.push(`${res.statusCode} ${body}`)
        else seen.push(body.split(' ')[0])
      } catch (err) { failures.push((err as Error).message) }
    }
  })()

  await eventually(() => seen.includes('a'), 5000, 'traffic to a')
  await mesh.write(spec('b'))
  await eventually(() => seen.at(-1) === 'b', 5000, 'traffic moved to b')
  const version = async (): Promise<number> => ((await (await fetch(`${client.adminUrl}/endpoints.json`)).json()) as { version: number }).version
  const before = await version()
  t.ok(before >= 2, `table version advanced (${before})`)

  writeFileSync(mesh.file, 'services:\n  - name: web\n   port: 80\n')
  await eventually(() => /mesh file not reloaded/.test(client.output), 5000, 'error logged')
  await sleep(200)
  const countB = seen.length
  await sleep(300)
  running = false
  await loop
  t.ok(seen.length > countB, 'traffic keeps flowing after the bad edit')
  t.equal(seen.at(-1), 'b', 'still served by the last good table')
  t.equal(await version(), before, 'the table version did not move')
  t.match(client.output, /mesh file not reloaded, keeping load \d+: .*mesh\.yaml:3:\d+: not valid YAML/)
  t.same(failures, [], `no failed requests across ${seen.length} requests`)
})
