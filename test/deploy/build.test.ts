// The builds: `npm run build` (scripts/bundle.ts, what the image runs) bundles every role so that
// each loads only its own code, and refuses what it could not ship; `tsc -p tsconfig.build.json`
// (what bench/build.ts compiles) builds a proxy that starts, reports ready and stops on SIGTERM.
// The image's runtime layer itself is tested in image.test.ts.
import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { allowedAtRunTime, bundle, devOnlyPackages, requiredIn, roleInputs } from '../../scripts/bundle.ts'
import { eventually, freePort, ROOT } from '../harness/mesh.ts'

t.test('npm run build is the bundle', async (t) => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
  t.equal(pkg.scripts.build, 'node scripts/bundle.ts')
})

t.test('the bundle splits along the roles: a sidecar never loads the control plane nor, until tracing is on, the tracing SDK', async (t) => {
  mkdirSync(join(ROOT, '.tap'), { recursive: true })
  const out = mkdtempSync(join(ROOT, '.tap', 'bundle-'))
  t.teardown(() => rmSync(out, { recursive: true, force: true }))
  const { metafile, roles } = await bundle({ out })
  const has = (inputs: Set<string>, prefix: string): boolean => [...inputs].some((i) => i.startsWith(prefix))
  const proxyNow = roleInputs(metafile, 'src/proxy/main.ts', false)
  const proxyLater = roleInputs(metafile, 'src/proxy/main.ts', true)
  const controlLater = roleInputs(metafile, 'src/control/main.ts', true)
  const init = roleInputs(metafile, 'src/init/main.ts', true)
  t.ok(has(proxyNow, 'src/outbound/'), 'the proxy\'s own code is in its chunks')
  t.notOk(has(proxyLater, 'node_modules/@kubernetes/client-node/'), 'no @kubernetes/client-node for the proxy, even later')
  t.notOk(has(proxyLater, 'src/control/'), 'no control-plane code for the proxy')
  t.notOk(has(proxyNow, 'node_modules/@opentelemetry/sdk-node/'), 'the tracing SDK is not loaded at start')
  t.ok(has(proxyLater, 'node_modules/@opentelemetry/sdk-node/'), '… but imported once tracing is on')
  t.ok(has(controlLater, 'node_modules/@kubernetes/client-node/'), 'the control plane has client-node')
  t.notOk(has(init, 'node_modules/@opentelemetry/') || has(init, 'node_modules/@kubernetes/'), 'remora init loads neither')
  const size = (role: string): number => roles.find((r) => r.role === role)?.withLazy ?? Infinity
  t.ok(size('proxy') < size('control') / 2, `the proxy loads ${(size('proxy') / 1e6).toFixed(1)} MB at most, the control plane ${(size('control') / 1e6).toFixed(1)} MB`)
  // node:http imported as an ES module reads its WebSocket/MessageEvent getters, which load Node's
  // internal undici (~10 MB of RSS): the bundle takes node:http with require() instead.
  const proxyChunk = Object.entries(metafile.outputs).find(([, o]) => o.entryPoint === 'src/proxy/main.ts')?.[0]
  if (proxyChunk === undefined) throw new Error('no output for src/proxy/main.ts')
  const loadsUndici = "const m = await import(process.argv[1]); console.log(typeof m === 'object' && process.moduleLoadList.some((x) => x.includes('deps/undici')))"
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', loadsUndici, pathToFileURL(join(ROOT, proxyChunk)).href])
  t.equal(stdout.trim(), 'false', "loading the proxy's modules does not load Node's internal undici")
})

t.test('the bundle refuses to load at run time what the image does not ship', async (t) => {
  // What esbuild cannot follow: createRequire(import.meta.url)(…) and requires renamed by esbuild.
  t.same(requiredIn('const r=createRequire(import.meta.url)("left-pad");'), ['left-pad'])
  t.same(requiredIn('let x=(0,import_node_module.createRequire)(import.meta.url)("koffi")'), ['koffi'])
  t.same(requiredIn('Agent=require2("undici/lib/dispatcher/agent.js"),b=__require("bufferutil")'), ['undici/lib/dispatcher/agent.js', 'bufferutil'])
  t.same(requiredIn('equal.code=\'require("ajv/dist/runtime/equal").default\''), [], 'a require written inside a string (generated code) is not one')
  t.same(requiredIn('x.require("y");require("./local.js")'), [], 'a method named require, a relative path')
  t.notOk(allowedAtRunTime('left-pad'))
  t.ok(allowedAtRunTime('undici/lib/dispatcher/agent.js'), 'an external, by subpath')
  t.ok(allowedAtRunTime('node:os') && allowedAtRunTime('os'), 'builtins')
  t.ok(allowedAtRunTime('bufferutil'), 'an optional require its package catches')
  t.same(devOnlyPackages(['node_modules/esbuild', 'node_modules/koffi', 'node_modules/yaml']), ['node_modules/esbuild'], 'dev-only packages, from package-lock.json')
})

t.test('node scripts/bundle.ts --layer assembles the runtime layer; bad arguments are refused', async (t) => {
  mkdirSync(join(ROOT, '.tap'), { recursive: true })
  const out = mkdtempSync(join(ROOT, '.tap', 'layer-'))
  t.teardown(() => rmSync(out, { recursive: true, force: true }))
  const { stdout } = await promisify(execFile)(process.execPath, [join(ROOT, 'scripts/bundle.ts'), '--layer', out])
  t.match(stdout, /proxy +loads [\d.]+ MB/)
  t.match(stdout, new RegExp(`layer ${out}: [\\d.]+ MB on disk; node_modules: .*koffi, undici`))
  const bad = await promisify(execFile)(process.execPath, [join(ROOT, 'scripts/bundle.ts'), '--layer']).then(() => 0, (err: { code: number, stderr: string }) => { t.match(err.stderr, /usage/); return err.code })
  t.equal(bad, 2)
})

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
