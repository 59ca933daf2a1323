// The image's runtime layer, assembled in a temporary folder outside the checkout as the Dockerfile's
// build stage assembles /opt/remora (scripts/bundle.ts --layer): with nothing else reachable, the
// sidecar, the control plane (mesh file and Kubernetes), init and inject run from it. And the
// Dockerfile: linted (dockerfile-utils), its stages copying what this test ran. No Docker engine
// here; the sizes it prints are the layers' estimates (docs/image.md).
import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { request } from 'undici'
import { validate } from 'dockerfile-utils'
import { bundle, diskBytes, EXTERNALS, IMAGE_NODE_FLAGS, ROOT } from '../../scripts/bundle.ts'
import { startApp } from '../harness/apps.ts'
import { FakeKubeApi, service } from '../harness/kube-api.ts'
import { freePort, pairSpec, stopProcess, writeMesh, type Teardown } from '../harness/mesh.ts'
import { Request } from '../harness/otlp.ts'
import { waitForLines, waitForReady } from '../harness/ready.ts'

const layer = mkdtempSync(join(tmpdir(), 'remora-layer-'))
t.teardown(() => rmSync(layer, { recursive: true, force: true }))
const built = await bundle({ out: layer, layer: true })
const CLI = join(layer, 'dist/cli.js')
const mb = (n: number): string => `${(n / 1e6).toFixed(1)} MB`

/** The children's environment: no module path or preloads that could reach the checkout's node_modules. */
const ENV: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_PATH' && k !== 'NODE_OPTIONS'))

/** A remora process run from the layer: `node /opt/remora/dist/cli.js <args>`, as the image's entry point. */
class LayerProcess {
  readonly proc: ChildProcess
  output = ''
  constructor (t: Teardown, args: string[], env: Record<string, string> = {}, stdin?: string) {
    // As the image's ENTRYPOINT starts it: node with the image's V8 flags.
    this.proc = spawn(process.execPath, [...IMAGE_NODE_FLAGS, CLI, ...args], { cwd: layer, env: { ...ENV, REMORA_LOG_LEVEL: 'info', ...env }, stdio: [stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] })
    this.proc.stdout?.on('data', (c: Buffer) => { this.output += c.toString() })
    this.proc.stderr?.on('data', (c: Buffer) => { this.output += c.toString() })
    if (stdin !== undefined) this.proc.stdin?.end(stdin)
    t.teardown(() => stopProcess(this.proc, 'SIGKILL'))
  }

  /** Resolves with the exit code once the process is done and its output read. */
  async exit (): Promise<number | null> {
    const [code] = await once(this.proc, 'close') as [number | null]
    return code
  }

  /** The JSON log lines that carry `msg`. */
  logged (msg: string): Array<Record<string, unknown>> {
    return this.output.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => String(l.msg).includes(msg))
  }
}

t.test('the layer holds the bundle and the externals only, and no other node_modules is reachable from it', async (t) => {
  for (let dir = dirname(layer); ; dir = dirname(dir)) {
    t.notOk(existsSync(join(dir, 'node_modules')), `no node_modules in ${dir}`)
    if (dirname(dir) === dir) break
  }
  t.same(readdirSync(layer).sort(), ['dist', 'node_modules', 'package.json'])
  t.same(readdirSync(join(layer, 'node_modules')).sort(), ['@koromix', ...EXTERNALS].sort(), 'node_modules: koffi with its prebuilt binary, and undici')
  t.same(readdirSync(join(layer, 'node_modules/@koromix')), [`koffi-${process.platform}-${process.arch}`], 'koffi\'s binary for this platform only')
  t.equal(JSON.parse(readFileSync(join(layer, 'package.json'), 'utf8')).type, 'module')
  t.ok(existsSync(CLI), 'dist/cli.js, the entry point')
  t.match(readFileSync(join(layer, 'dist/THIRD-PARTY-LICENSES.txt'), 'utf8'), /@kubernetes\/client-node@[\d.]+ \(Apache-2\.0\)/, 'the bundled packages\' licenses')
  const dist = diskBytes(join(layer, 'dist'))
  const modules = diskBytes(join(layer, 'node_modules'))
  t.comment(`runtime layer ${mb(dist + modules)} on disk: dist/ ${mb(dist)}, node_modules/ ${mb(modules)} (${built.copied.join(', ')})`)
  for (const r of built.roles) t.comment(`  ${r.role}: loads ${mb(r.bytes)} of dist/, ${mb(r.withLazy)} with what it imports later`)
  t.ok(dist + modules < 30e6, 'the runtime layer stays far below the 145 MB of npm ci --omit=dev')
})

/** An OTLP/HTTP collector that resolves `seen` once spans of every named service arrived. */
async function collector (t: Teardown, services: string[]): Promise<{ url: string, seen: Promise<void> }> {
  const missing = new Set(services)
  let done = (): void => {}
  const seen = new Promise<void>((resolve) => { done = resolve })
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const decoded = Request.toObject(Request.decode(Buffer.concat(chunks)), { defaults: true }) as { resourceSpans?: Array<{ resource?: { attributes?: Array<{ key: string, value: { stringValue?: string } }> } }> }
      for (const rs of decoded.resourceSpans ?? []) missing.delete(rs.resource?.attributes?.find((a) => a.key === 'service.name')?.value.stringValue ?? '')
      if (missing.size === 0) done()
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end()
    })
  })
  const port = await freePort()
  server.listen(port, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return { url: `http://127.0.0.1:${port}`, seen }
}

t.test('from the layer: two sidecars fed by the control plane (mTLS) carry a request, read original destinations through koffi and export spans', async (t) => {
  const app = await startApp(t, (req, res) => { req.resume(); req.on('end', () => res.end(`app ${req.url}`)) })
  const mesh = await writeMesh(pairSpec(app.port))
  t.teardown(() => rmSync(dirname(mesh.file), { recursive: true, force: true }))
  const caDir = join(dirname(mesh.file), 'ca')
  const [discovery, controlAdmin] = [await freePort(), await freePort()]
  const control = new LayerProcess(t, ['control', '--mesh-file', mesh.file, '--ca', `dev:${caDir}`, '--discovery-addr', `127.0.0.1:${discovery}`, '--admin-addr', `127.0.0.1:${controlAdmin}`])
  await waitForReady('control plane from the layer', `http://127.0.0.1:${controlAdmin}`, control.proc, () => control.output)
  const otlp = await collector(t, ['client', 'web'])
  const sidecars = new Map<string, LayerProcess>()
  await Promise.all(['web', 'client'].map(async (name) => {
    const s = new LayerProcess(t, ['proxy', '--mesh-file', mesh.file, '--workload', name], {
      REMORA_CONTROL_ADDR: `127.0.0.1:${discovery}`,
      REMORA_TRUST_ANCHORS: join(caDir, 'root.pem'),
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
      OTEL_BSP_SCHEDULE_DELAY: '100',
    })
    sidecars.set(name, s)
    await waitForReady(`sidecar ${name} from the layer`, `http://127.0.0.1:${mesh.ports.get(name)?.admin}`, s.proc, () => s.output)
  }))
  const res = await request(`http://127.0.0.1:${mesh.ports.get('client')?.outbound}/through-the-image`, { headers: { host: 'web' } })
  t.equal(res.statusCode, 200)
  t.equal(await res.body.text(), 'app /through-the-image')
  t.equal(app.requests, 1)
  for (const [name, s] of sidecars) {
    // Logged after the certificate and after the original-destination lookup was loaded (or not).
    await waitForLines(`sidecar ${name}`, s.proc, () => s.output, (l) => l.includes('"msg":"sidecar ready"'))
    t.equal(s.logged('certificate issued').length, 1, `${name}: certificate from the bundled control plane`)
    t.same(s.logged('original destinations cannot be read'), [], `${name}: koffi loaded, SO_ORIGINAL_DST readable`)
    const maps = readFileSync(`/proc/${s.proc.pid}/maps`, 'utf8')
    t.ok(maps.includes(join(layer, `node_modules/@koromix/koffi-${process.platform}-${process.arch}`)), `${name}: koffi's binary mapped from the layer`)
  }
  await otlp.seen
  t.pass('spans of both sidecars reached the collector (the bundled OpenTelemetry SDK)')
  for (const s of sidecars.values()) {
    s.proc.kill('SIGTERM')
    t.equal(await s.exit(), 0, 'stops cleanly on SIGTERM')
  }
})

t.test('from the layer: the control plane watches Kubernetes through the bundled @kubernetes/client-node', async (t) => {
  const kube = await FakeKubeApi.start()
  t.teardown(() => kube.close())
  const kubeDir = mkdtempSync(join(tmpdir(), 'remora-layer-kube-'))
  t.teardown(() => rmSync(kubeDir, { recursive: true, force: true }))
  const kubeconfig = join(kubeDir, 'kubeconfig')
  writeFileSync(kubeconfig, kube.kubeConfig().exportConfig())
  kube.apply(service('shop', 'web', { ports: [{ name: 'http', port: 80, targetPort: 8080 }] }))
  const [discovery, admin] = [await freePort(), await freePort()]
  const control = new LayerProcess(t, ['control', '--discovery-addr', `127.0.0.1:${discovery}`, '--admin-addr', `127.0.0.1:${admin}`], { KUBECONFIG: kubeconfig, REMORA_SOURCE: 'kubernetes' })
  await waitForReady('control plane (Kubernetes) from the layer', `http://127.0.0.1:${admin}`, control.proc, () => control.output)
  const listed = new Set(kube.requests.filter((r) => r.verb === 'list' && r.status === 200).map((r) => r.resource))
  t.ok(['services', 'endpointslices', 'pods'].every((r) => listed.has(r as never)), `listed services, endpointslices and pods (${[...listed].join(', ')})`)
  const catalog = JSON.parse(await (await request(`http://127.0.0.1:${admin}/catalog.json`)).body.text()) as { source: string, services: Array<{ name: string, namespace: string }> }
  t.match(catalog, { source: /kubernetes/i, services: [{ name: 'web', namespace: 'shop' }] }, 'the service is in the catalog')
})

t.test('from the layer: remora init --dry-run, control --help and inject run', async (t) => {
  const exits0 = async (p: LayerProcess, what: string): Promise<void> => {
    const code = await p.exit()
    t.equal(code, 0, `${what} exits 0`)
    if (code !== 0) t.comment(p.output)
  }
  const init = new LayerProcess(t, ['init', '--dry-run'])
  await exits0(init, 'remora init --dry-run')
  t.match(init.output, /\*nat\n[^]*REMORA_OUTPUT[^]*COMMIT/, 'prints the rules')
  const help = new LayerProcess(t, ['control', '--help'])
  await exits0(help, 'remora control --help')
  t.match(help.output, /^usage: remora control/)
  const deployment = 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - {name: web, image: web:1, ports: [{containerPort: 8080}]}\n'
  const inject = new LayerProcess(t, ['inject', '-'], {}, deployment)
  await exits0(inject, 'remora inject -')
  t.match(inject.output, /name: remora-proxy/, 'the sidecar added')
})

/** The stages of a Dockerfile: each FROM line and the instructions under it (continuations joined). */
function stages (dockerfile: string): Array<{ from: string, lines: string[] }> {
  const lines = dockerfile.replace(/\\\n/g, ' ').split('\n').map((l) => l.replace(/\s+/g, ' ').trim()).filter((l) => l !== '' && !l.startsWith('#'))
  const out: Array<{ from: string, lines: string[] }> = []
  for (const l of lines) {
    if (l.startsWith('FROM ')) out.push({ from: l, lines: [] })
    else out.at(-1)?.lines.push(l)
  }
  return out
}

/** Whether .dockerignore (written as `*` then `!path` exceptions, the only forms it uses) lets `path` into the context. */
function inContext (ignore: string, path: string): boolean {
  let included = true
  for (const raw of ignore.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))) {
    const negate = raw.startsWith('!')
    const pattern = (negate ? raw.slice(1) : raw).replace(/\/$/, '')
    if (pattern === '*' || path === pattern || path.startsWith(`${pattern}/`)) included = negate
  }
  return included
}

t.test('the Dockerfile lints clean and its stages build and copy this layer', async (t) => {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
  t.same(validate(dockerfile), [], 'dockerfile-utils: no errors, no warnings')
  const [build, demo, runtime, ...more] = stages(dockerfile)
  t.same(more, [], 'three stages: build, the demo apps, and the image (last: the default target)')
  t.match(demo.from, /^FROM node:24-[\w.-]+ AS demo$/, 'the k8s/demo apps have a stage of their own')
  t.ok(demo.lines.includes('COPY deploy/local/apps ./deploy/local/apps') && inContext(readFileSync(join(ROOT, '.dockerignore'), 'utf8'), 'deploy/local/apps/worker.ts'), 'the demo stage copies the apps, which are in the context')
  t.ok(demo.lines.includes('USER 2102:2102'), 'the demo apps do not run as root')
  t.match(build.from, /^FROM node:24-[\w.-]+ AS build$/)
  t.match(runtime.from, /^FROM node:24-[\w.-]+$/, 'an official Node 24 base')
  t.ok(build.lines.includes('RUN node scripts/bundle.ts --layer /out'), 'the build stage assembles the layer as this test did')
  t.ok(runtime.lines.includes('COPY --from=build /out /opt/remora'), 'the runtime stage copies it, and only it, from the build stage')
  t.ok(runtime.lines.includes(`ENTRYPOINT [${['node', ...IMAGE_NODE_FLAGS, '/opt/remora/dist/cli.js'].map((a) => JSON.stringify(a)).join(', ')}]`), 'the entry point is the layer\'s dist/cli.js, with the image\'s V8 flags')
  t.ok(runtime.lines.includes('USER 2102:2102'))
  const apt = runtime.lines.find((l) => l.includes('apt-get install')) ?? ''
  t.match(apt, /apt-get update && .*apt-get install -y --no-install-recommends iptables && rm -rf \/var\/lib\/apt\/lists\/\*/, 'iptables, for remora init, without recommends or apt lists')
  t.match(apt, /useradd --system --uid 2102 --gid 2102/)
  t.notOk(runtime.lines.some((l) => /\bnpm\b/.test(l) && !l.includes('rm -rf')), 'no npm in the runtime stage')

  // Every file the bundle read from the checkout is in the build context and copied into the build stage
  // (modules a plugin made, `namespace:path`, are no files).
  const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
  const copied = build.lines.filter((l) => l.startsWith('COPY ')).flatMap((l) => l.split(/\s+/).slice(1, -1))
  const needed = ['package.json', 'package-lock.json', 'tsconfig.json', 'scripts/bundle.ts', ...Object.keys(built.metafile.inputs).filter((i) => !i.includes('node_modules/') && !/^[\w-]+:/.test(i))]
  for (const file of needed) {
    if (!inContext(ignore, file) || !copied.some((c) => file === c || file.startsWith(`${c.replace(/\/$/, '')}/`))) t.fail(`${file}: not in the build context or not copied by the build stage`)
  }
  t.ok(needed.length > 50, `${needed.length} files the build reads are in the context`)
  for (const kept of ['node_modules/yaml/package.json', '.git/HEAD', '.remora/ca/root-key.pem', 'test/deploy/image.test.ts', 'dist/cli.js']) t.notOk(inContext(ignore, kept), `${kept} stays out of the context`)
})
