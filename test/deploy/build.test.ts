// The image runs the compiled JavaScript: the build succeeds and the built proxy starts and serves.
import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { eventually, freePort, ROOT } from '../harness/mesh.ts'

t.test('tsc -p tsconfig.build.json builds a proxy that starts, reports ready and stops on SIGTERM', async (t) => {
  mkdirSync(join(ROOT, '.tap'), { recursive: true })
  const out = mkdtempSync(join(ROOT, '.tap', 'dist-'))
  t.teardown(() => rmSync(out, { recursive: true, force: true }))
  await promisify(execFile)(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', out])
  const [outbound, inbound, admin] = [await freePort(), await freePort(), await freePort()]
  const mesh = join(out, 'mesh.yaml')
  writeFileSync(mesh, 'services: []\n')
  const proc = spawn(process.execPath, [join(out, 'cli.js'), 'proxy', '--mesh-file', mesh, '--outbound-addr', `127.0.0.1:${outbound}`, '--inbound-addr', `127.0.0.1:${inbound}`, '--admin-addr', `127.0.0.1:${admin}`], { stdio: 'ignore' })
  t.teardown(() => { proc.kill('SIGKILL') })
  await eventually(async () => (await fetch(`http://127.0.0.1:${admin}/ready`).catch(() => undefined))?.status === 200, 10_000, 'built proxy ready')
  const exited = new Promise((resolve) => proc.once('exit', resolve))
  proc.kill('SIGTERM')
  t.equal(await exited, 0)
})
