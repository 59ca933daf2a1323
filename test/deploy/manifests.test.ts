// Offline checks of what users apply: every Kubernetes manifest under k8s/, and what `kubectl kustomize`
// builds from every kustomization there, validated strictly against the API schemas of Kubernetes 1.36
// (test/harness/k8s-schema.ts: unknown fields and wrong types are errors); the mesh files inside them;
// and the image's runtime contract.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { basename, dirname, join, relative, resolve } from 'node:path'
import { parseAllDocuments } from 'yaml'
import { parseMesh } from '../../src/config/mesh-file.ts'
import { validateStrict } from '../harness/k8s-schema.ts'
import { IMAGE_NODE_FLAGS } from '../../scripts/bundle.ts'

const ROOT = new URL('../..', import.meta.url).pathname
const K8S = join(ROOT, 'k8s')
const KUSTOMIZATION_NAMES = new Set(['kustomization.yaml', 'kustomization.yml', 'Kustomization'])

function walk (dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name)
    return statSync(p).isDirectory() ? walk(p) : [p]
  })
}

const rel = (p: string): string => relative(ROOT, p)

/**
 * `kubectl apply -f` reads YAML 1.1 (an unquoted `on`/`yes` is a boolean, `0755` is octal), so manifests are
 * read the same way; timestamps stay strings, as they reach the API server.
 */
function parseYaml (text: string): ReturnType<typeof parseAllDocuments> {
  return parseAllDocuments(text, { version: '1.1', customTags: (tags) => tags.filter((tag) => typeof tag === 'string' || tag.tag !== 'tag:yaml.org,2002:timestamp') })
}

interface Kustomization { dir: string, kind: string, inputs: string[] }

/** A kustomization and the files it reads that are not whole objects (patches, generator sources, plugin configs). */
function readKustomization (file: string): Kustomization {
  const dir = dirname(file)
  const k = (parseAllDocuments(readFileSync(file, 'utf8'))[0]?.toJS() ?? {}) as Record<string, unknown>
  const inputs: string[] = []
  const add = (p: unknown): void => { if (typeof p === 'string' && !p.includes('\n')) inputs.push(resolve(dir, p)) }
  const list = (v: unknown): unknown[] => Array.isArray(v) ? v : []
  for (const p of list(k.patches)) add((p as { path?: unknown }).path)
  for (const p of list(k.patchesStrategicMerge)) add(p)
  for (const p of list(k.patchesJson6902)) add((p as { path?: unknown }).path)
  for (const p of list(k.replacements)) add((p as { path?: unknown }).path)
  for (const g of [...list(k.configMapGenerator), ...list(k.secretGenerator)] as Array<{ files?: unknown, envs?: unknown, env?: unknown }>) {
    for (const f of list(g.files)) if (typeof f === 'string') add(f.includes('=') ? f.slice(f.indexOf('=') + 1) : f)
    for (const f of list(g.envs)) add(f)
    add(g.env)
  }
  for (const key of ['configurations', 'crds', 'generators', 'transformers', 'validators']) for (const p of list(k[key])) add(p)
  add((k.openapi as { path?: unknown } | undefined)?.path)
  return { dir, kind: typeof k.kind === 'string' ? k.kind : 'Kustomization', inputs }
}

const files = walk(K8S)
const kustomizations = files.filter((f) => KUSTOMIZATION_NAMES.has(basename(f))).map(readKustomization)
const kustomizeInputs = new Set(kustomizations.flatMap((k) => k.inputs))
/** Manifests applied as they are: every YAML file but kustomizations and what they read as patches or sources. */
const manifestFiles = files.filter((f) => /\.ya?ml$/.test(f) && !KUSTOMIZATION_NAMES.has(basename(f)) && !kustomizeInputs.has(f))

interface Manifest { source: string, doc: Record<string, unknown> }

const standalone: Manifest[] = manifestFiles.flatMap((file) => parseYaml(readFileSync(file, 'utf8'))
  .map((d) => d.toJS() as unknown)
  .filter((doc): doc is Record<string, unknown> => doc !== null && typeof doc === 'object')
  .map((doc) => ({ source: rel(file), doc })))

function kubectlMissing (): string | undefined {
  try {
    execFileSync('kubectl', ['version', '--client'], { stdio: 'ignore', timeout: 30_000 })
    return undefined
  } catch (err) {
    return `kubectl is not usable here (${(err as Error).message.split('\n')[0]}): kustomizations are not built`
  }
}
const noKubectl = kubectlMissing()

interface Build { dir: string, output?: string, error?: string }
const builds: Build[] = noKubectl !== undefined ? [] : kustomizations.filter((k) => k.kind !== 'Component').map(({ dir }) => {
  try {
    return { dir, output: execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8', timeout: 60_000, maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'pipe'] }) }
  } catch (err) {
    return { dir, error: String((err as { stderr?: unknown }).stderr ?? '') || (err as Error).message }
  }
})
const built: Manifest[] = builds.flatMap(({ dir, output }) => output === undefined
  ? []
  : parseAllDocuments(output).map((d) => d.toJS() as unknown)
    .filter((doc): doc is Record<string, unknown> => doc !== null && typeof doc === 'object')
    .map((doc) => ({ source: `kubectl kustomize ${rel(dir) || '.'}`, doc })))

/** Everything a user may apply: the files as they are, and each kustomization's output. */
const manifests = [...standalone, ...built]

function name (m: Manifest): string {
  const meta = m.doc.metadata as { name?: string, namespace?: string } | undefined
  return `${m.source}: ${String(m.doc.kind)} ${meta?.namespace !== undefined ? `${meta.namespace}/` : ''}${meta?.name ?? ''}`
}

interface Container { name: string, args?: string[], restartPolicy?: string, securityContext?: { runAsUser?: number }, readinessProbe?: { httpGet?: { path: string, port: number } }, startupProbe?: { httpGet?: { path: string, port: number } }, env?: Array<{ name: string, value?: string }> }
interface PodSpec { terminationGracePeriodSeconds?: number, containers?: Container[], initContainers?: Container[] }
interface PodTemplate { metadata?: { annotations?: Record<string, string> }, spec?: PodSpec }

/** The pod templates of a workload (a Pod is its own template), and those of a List's items. */
function podTemplates (doc: Record<string, unknown>): PodTemplate[] {
  const spec = doc.spec as { template?: PodTemplate, jobTemplate?: { spec?: { template?: PodTemplate } } } | undefined
  if (doc.kind === 'List') return ((doc.items ?? []) as Array<Record<string, unknown>>).flatMap(podTemplates)
  if (doc.kind === 'Pod') return [doc as PodTemplate]
  if (doc.kind === 'CronJob') return spec?.jobTemplate?.spec?.template !== undefined ? [spec.jobTemplate.spec.template] : []
  return spec?.template !== undefined ? [spec.template] : []
}

t.test('every manifest under k8s/ validates strictly against the Kubernetes API schema', async (t) => {
  t.ok(manifestFiles.length > 0, 'there are manifests')
  for (const file of manifestFiles) {
    for (const doc of parseYaml(readFileSync(file, 'utf8'))) t.same(doc.errors, [], `${rel(file)}: YAML parses`)
  }
  for (const m of standalone) t.same(validateStrict(m.doc), [], `${name(m)} is valid`)
})

t.test('kubectl kustomize builds every kustomization under k8s/, and what it builds validates strictly', async (t) => {
  if (kustomizations.length === 0) { t.pass('kustomizations built', { skip: 'no kustomization.yaml under k8s/ yet' }); return }
  if (noKubectl !== undefined) { t.pass('kustomizations built', { skip: noKubectl }); return }
  for (const k of kustomizations.filter((k) => k.kind === 'Component')) t.pass(`kubectl kustomize ${rel(k.dir)}`, { skip: 'a kustomize Component: built through the kustomizations that use it' })
  for (const b of builds) {
    t.test(`kubectl kustomize ${rel(b.dir) || '.'}`, async (t) => {
      t.equal(b.error, undefined, 'builds')
      const out = built.filter((m) => m.source === `kubectl kustomize ${rel(b.dir) || '.'}`)
      t.ok(out.length > 0 || b.error !== undefined, 'builds objects')
      for (const m of out) t.same(validateStrict(m.doc), [], `${name(m)} is valid`)
    })
  }
})

t.test('ConfigMaps carrying a mesh file carry a valid one', async (t) => {
  for (const m of manifests) {
    if (m.doc.kind !== 'ConfigMap') continue
    for (const [key, text] of Object.entries((m.doc.data ?? {}) as Record<string, string>)) {
      if (key.endsWith('mesh.yaml')) t.doesNotThrow(() => parseMesh(text, `${m.source}#${key}`), `${name(m)}: ${key} is a valid mesh file`)
    }
  }
})

t.test('sidecar containers honour the design: UID 2102, probes on the admin port, grace longer than the drain', async (t) => {
  for (const m of manifests) {
    for (const { spec: pod } of podTemplates(m.doc)) {
      const sidecars = [...(pod?.containers ?? []), ...(pod?.initContainers ?? []).filter((c) => c.restartPolicy === 'Always')]
      for (const c of sidecars) {
        if (c.args?.[0] !== 'proxy') continue
        t.equal(c.securityContext?.runAsUser, 2102, `${name(m)}: ${c.name} runs as 2102`)
        // A native sidecar (init container) gates the app's start on its startupProbe; a plain container on its readinessProbe.
        const probe = c.restartPolicy === 'Always' ? (c.startupProbe ?? c.readinessProbe) : c.readinessProbe
        t.same(probe?.httpGet, { path: '/ready', port: 15000 }, `${name(m)}: ${c.name} probed on admin /ready`)
        const grace = c.env?.find((e) => e.name === 'REMORA_SHUTDOWN_GRACE')?.value ?? '30s'
        t.ok((pod?.terminationGracePeriodSeconds ?? 30) > Number.parseInt(grace), `${name(m)}: pod grace exceeds the sidecar's drain (${grace})`)
      }
    }
  }
})

t.test('Services carry only valid remora.dev/* annotations; the control plane may read what it watches', async (t) => {
  const { policyFromAnnotations } = await import('../../src/resilience/annotations.ts')
  const granted = new Set<string>()
  for (const m of manifests) {
    const doc = m.doc as { kind: string, metadata?: { name?: string, annotations?: Record<string, string> }, rules?: Array<{ apiGroups: string[], resources: string[], verbs: string[] }> }
    if (doc.kind === 'Service') t.same(policyFromAnnotations(doc.metadata?.annotations ?? {}, `${m.source}: ${doc.metadata?.name}`).errors, [], `${name(m)} annotations`)
    if (doc.kind === 'ClusterRole' && doc.metadata?.name === 'remora-control') {
      for (const r of doc.rules ?? []) for (const g of r.apiGroups) for (const res of r.resources) if (r.verbs.includes('list') && r.verbs.includes('watch')) granted.add(`${g}/${res}`)
    }
  }
  // What src/control/kube-source.ts lists and watches.
  for (const need of ['/services', '/pods', 'discovery.k8s.io/endpointslices']) t.ok(granted.has(need), `ClusterRole remora-control may list and watch ${need}`)
})

t.test('pod authorization annotations parse as the sidecar will read them', async (t) => {
  const { parseAllowSetting } = await import('../../src/parse/allow-list.ts')
  const { DEFAULT_POLICIES } = await import('../../src/mesh/authorization.ts')
  let seen = 0
  for (const m of manifests) {
    for (const template of podTemplates(m.doc)) {
      const a = template.metadata?.annotations ?? {}
      if (a['remora.dev/allow'] !== undefined) { seen++; t.doesNotThrow(() => parseAllowSetting(a['remora.dev/allow']), `${name(m)}: remora.dev/allow`) }
      if (a['remora.dev/default-policy'] !== undefined) t.ok((DEFAULT_POLICIES as readonly string[]).includes(a['remora.dev/default-policy']), `${name(m)}: remora.dev/default-policy`)
    }
  }
  t.ok(seen > 0, 'an example sets an allow list')
})

t.test('the image runs Node 24 as UID 2102 and exposes the sidecar and control-plane ports', async (t) => {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
  t.match(dockerfile, /^FROM node:24[-\w.]*$/m)
  t.match(dockerfile, /^USER 2102:2102$/m)
  t.match(dockerfile, /^EXPOSE 15001 15006 15000 15012 15014 15017$/m)
  t.ok(dockerfile.split('\n').includes(`ENTRYPOINT [${['node', ...IMAGE_NODE_FLAGS, '/opt/remora/dist/cli.js'].map((a) => JSON.stringify(a)).join(', ')}]`), 'the entry point: node with the image\'s V8 flags, then dist/cli.js')
})
