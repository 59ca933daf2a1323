// `remora inject` as users run it: a real child process, YAML in on stdin or --file, YAML out on stdout,
// skipped workloads on stderr, exit 2 with nothing on stdout when something is wrong.
import t from 'tap'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parseAllDocuments } from 'yaml'
import { flagOf, InjectSettings, readSettings } from '../../src/config/env.ts'
import { injectYaml } from '../../src/inject/yaml.ts'
import { CLI } from '../harness/mesh.ts'

const FIXTURES = new URL('../fixtures/inject/', import.meta.url)
const path = (name: string): string => fileURLToPath(new URL(name, FIXTURES))
const fixture = (name: string): string => readFileSync(path(name), 'utf8')
const { namespaceAnnotations: _ns, ...MESH } = readSettings(InjectSettings, {}, new Map())

/** The environment without any REMORA_* or OTEL_* variable of the machine's. */
const CLEAN = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(REMORA|OTEL)_/.test(k)))

function run (args: string[], stdin?: string, env: Record<string, string> = {}): Promise<{ code: number | null, stdout: string, stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'inject', ...args], { env: { ...CLEAN, ...env }, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    child.on('error', reject)
    child.stdin.on('error', () => {}) // it may exit before reading stdin (a bad flag)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
    child.stdin.end(stdin ?? '')
  })
}

t.test('stdin to stdout, and - or --file give the same; skipped workloads on stderr, one line each', async (t) => {
  const input = fixture('list.yaml')
  const piped = await run([], input)
  t.equal(piped.code, 0)
  t.equal(piped.stdout, injectYaml(input, { source: '<stdin>', mesh: MESH }).output, 'what injectYaml makes')
  t.equal(piped.stderr, "remora inject: <stdin>:41: DaemonSet demo/node-agent: hostNetwork: true, so the pod shares the node's network and remora init would redirect the node's traffic; not injected\n")
  const dash = await run(['-'], input)
  t.equal(dash.stdout, piped.stdout)
  const file = await run(['--file', path('list.yaml')])
  t.equal(file.stdout, piped.stdout)
  t.match(file.stderr, /^remora inject: \/.*\/list\.yaml:41: DaemonSet demo\/node-agent: /, 'the file named in the warning')
  const again = await run([], piped.stdout)
  t.equal(again.stdout, piped.stdout, 'its own output back in: the same bytes')
})

t.test('flags and variables set what every sidecar gets', async (t) => {
  const flags = await run([
    '--file', path('job.yaml'), '--proxy-image', 'registry.local/remora:1.2.3', '--control-addr', 'control.mesh.svc:15012',
    '--otlp-endpoint', 'http://jaeger-collector.remora-system.svc:4318', '--trust-domain', 'prod.example', '--proxy-memory-limit=1Gi',
  ])
  t.equal(flags.code, 0, flags.stderr)
  const spec = parseAllDocuments(flags.stdout)[0].toJS().spec.template.spec
  const proxy = spec.initContainers[1]
  const env = Object.fromEntries(proxy.env.map((e: { name: string, value?: string }) => [e.name, e.value]))
  t.equal(proxy.image, 'registry.local/remora:1.2.3')
  t.equal(spec.initContainers[0].image, 'registry.local/remora:1.2.3')
  t.equal(env.REMORA_CONTROL_ADDR, 'control.mesh.svc:15012')
  t.equal(env.OTEL_EXPORTER_OTLP_ENDPOINT, 'http://jaeger-collector.remora-system.svc:4318')
  t.equal(env.REMORA_IDENTITY, 'spiffe://prod.example/ns/$(REMORA_POD_NAMESPACE)/sa/backfill')
  t.equal(proxy.resources.limits.memory, '1Gi')
  const vars = await run([], fixture('job.yaml'), { REMORA_PROXY_IMAGE: 'registry.local/remora:env', REMORA_TRUST_ANCHORS_CONFIGMAP: 'mesh-root' })
  t.match(vars.stdout, /image: registry\.local\/remora:env\n/)
  t.match(vars.stdout, /configMap:\n {12}name: mesh-root\n/)
  const ns = await run(['--namespace-annotations', 'remora.dev/inject=disabled'], fixture('job.yaml'))
  t.equal(ns.stdout, fixture('job.yaml'), 'a disabled namespace: passed through')
  t.match(ns.stderr, /Job shop\/backfill-orders: remora\.dev\/inject is disabled on --namespace-annotations; left as it is\n$/)
})

t.test('errors exit 2, name what to fix, and write nothing to stdout', async (t) => {
  const bad = fixture('deployment.yaml').replace('remora.dev/log-level: debug', 'remora.dev/log-level: chatty')
  const annotation = await run([], fixture('statefulset.yaml') + '---\n' + bad)
  t.equal(annotation.code, 2)
  t.equal(annotation.stdout, '', 'nothing half written')
  t.equal(annotation.stderr, 'remora: <stdin>:45: annotation remora.dev/log-level in Deployment shop/web: expected one of fatal, error, warn, info, debug, trace, silent, got "chatty"; nothing written [REMORA_INJECT_ANNOTATION]\n')
  const yaml = await run([], 'kind: Pod\nmetadata: {name: [}\n')
  t.equal(yaml.code, 2)
  t.match(yaml.stderr, /^remora: not valid YAML, nothing written:\n {2}<stdin>:2:/)
  t.match(yaml.stderr, /\[REMORA_INJECT_YAML\]\n$/)
  const missing = await run(['--file', '/no/such/app.yaml'])
  t.equal(missing.code, 2)
  t.match(missing.stderr, /^remora: cannot read \/no\/such\/app\.yaml: ENOENT.*\[REMORA_INJECT_READ\]\n$/)
  const flag = await run(['--control-addr', 'nowhere'], fixture('job.yaml'))
  t.equal(flag.code, 2)
  t.match(flag.stderr, /^remora: option --control-addr: expected host:port .*\[REMORA_CONFIG_FLAG\]\n$/)
  const both = await run(['-', '--file', path('job.yaml')])
  t.match(both.stderr, /- \(stdin\) and --file .* do not go together/)
  const memory = await run(['--proxy-memory-request', '1Gi'], fixture('job.yaml'))
  t.match(memory.stderr, /^remora: the sidecar's memory request 1Gi \(--proxy-memory-request\) is above its limit 256Mi \(--proxy-memory-limit\) \[REMORA_CONFIG_FLAG\]\n$/)
  const unknown = await run(['--inject-everything', 'yes'])
  t.match(unknown.stderr, /unknown option --inject-everything/)
})

t.test('--help documents every option', async (t) => {
  const help = await run(['--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, /^usage: remora inject \[--file <path> \| -\]/)
  for (const s of Object.values(InjectSettings)) {
    t.match(help.stdout, flagOf(s), `documents ${flagOf(s)}`)
    t.match(help.stdout, s.env, `documents ${s.env}`)
  }
})
