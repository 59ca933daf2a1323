// Offline checks of what users apply: every Kubernetes manifest against the API schemas
// (kubernetes-models), the mesh files inside them, and the image's runtime contract.
import t from 'tap'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { parseAllDocuments } from 'yaml'
import { parseMesh } from '../../src/config/mesh-file.ts'

const ROOT = new URL('../..', import.meta.url).pathname

function yamlFiles (dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name)
    return statSync(p).isDirectory() ? yamlFiles(p) : /\.ya?ml$/.test(name) ? [p] : []
  })
}

interface Manifest { apiVersion: string, kind: string, metadata?: { name?: string }, data?: Record<string, string> }

async function modelFor (apiVersion: string, kind: string): Promise<new (m: unknown) => { validate (): void }> {
  const group = apiVersion.includes('/') ? apiVersion : `v1/${apiVersion}`.replace('v1/v1', 'v1')
  const path = apiVersion.includes('/') ? `kubernetes-models/${group}/${kind}` : `kubernetes-models/v1/${kind}`
  const mod = await import(path) as Record<string, new (m: unknown) => { validate (): void }>
  return mod[kind]
}

t.test('every manifest under k8s/ is valid against the Kubernetes API schema', async (t) => {
  const files = yamlFiles(join(ROOT, 'k8s'))
  t.ok(files.length > 0, 'there are manifests')
  for (const file of files) {
    for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) {
      t.same(doc.errors, [], `${file}: YAML parses`)
      const m = doc.toJS() as Manifest
      const Model = await modelFor(m.apiVersion, m.kind)
      t.doesNotThrow(() => new Model(m).validate(), `${file}: ${m.kind}/${m.metadata?.name} is valid`)
      for (const [key, text] of Object.entries(m.data ?? {})) {
        if (key.endsWith('mesh.yaml')) t.doesNotThrow(() => parseMesh(text, `${file}#${key}`), `${file}: ConfigMap ${key} is a valid mesh file`)
      }
    }
  }
})

t.test('sidecar containers honour the design: UID 2102, probes on the admin port, grace longer than the drain', async (t) => {
  for (const file of yamlFiles(join(ROOT, 'k8s'))) {
    for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) {
      const m = doc.toJS() as { kind: string, spec?: { template?: { spec?: { terminationGracePeriodSeconds?: number, containers?: Array<{ name: string, args?: string[], securityContext?: { runAsUser?: number }, readinessProbe?: { httpGet?: { path: string, port: number } }, env?: Array<{ name: string, value?: string }> }> } } } }
      const pod = m.spec?.template?.spec
      for (const c of pod?.containers ?? []) {
        if (c.args?.[0] !== 'proxy') continue
        t.equal(c.securityContext?.runAsUser, 2102, `${file}: ${c.name} runs as 2102`)
        t.same(c.readinessProbe?.httpGet, { path: '/ready', port: 15000 }, `${file}: readiness on admin /ready`)
        const grace = c.env?.find((e) => e.name === 'REMORA_SHUTDOWN_GRACE')?.value ?? '30s'
        t.ok((pod?.terminationGracePeriodSeconds ?? 30) > Number.parseInt(grace), `${file}: pod grace exceeds the sidecar's drain (${grace})`)
      }
    }
  }
})

t.test('Services carry only valid remora.dev/* annotations; the control plane may read what it watches', async (t) => {
  const { policyFromAnnotations } = await import('../../src/resilience/annotations.ts')
  const granted = new Set<string>()
  for (const file of yamlFiles(join(ROOT, 'k8s'))) {
    for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) {
      const m = doc.toJS() as { kind: string, metadata?: { name?: string, annotations?: Record<string, string> }, rules?: Array<{ apiGroups: string[], resources: string[], verbs: string[] }> }
      if (m.kind === 'Service') t.same(policyFromAnnotations(m.metadata?.annotations ?? {}, `${file}: ${m.metadata?.name}`).errors, [], `${file}: Service ${m.metadata?.name} annotations`)
      if (m.kind === 'ClusterRole' && m.metadata?.name === 'remora-control') {
        for (const r of m.rules ?? []) for (const g of r.apiGroups) for (const res of r.resources) if (r.verbs.includes('list') && r.verbs.includes('watch')) granted.add(`${g}/${res}`)
      }
    }
  }
  // What src/control/kube-source.ts lists and watches.
  for (const need of ['/services', '/pods', 'discovery.k8s.io/endpointslices']) t.ok(granted.has(need), `ClusterRole remora-control may list and watch ${need}`)
})

t.test('pod authorization annotations parse as the sidecar will read them', async (t) => {
  const { parseAllowSetting } = await import('../../src/parse/allow-list.ts')
  const { DEFAULT_POLICIES } = await import('../../src/mesh/authorization.ts')
  let seen = 0
  for (const file of yamlFiles(join(ROOT, 'k8s'))) {
    for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) {
      const m = doc.toJS() as { spec?: { template?: { metadata?: { annotations?: Record<string, string> } } } }
      const a = m.spec?.template?.metadata?.annotations ?? {}
      if (a['remora.dev/allow'] !== undefined) { seen++; t.doesNotThrow(() => parseAllowSetting(a['remora.dev/allow']), `${file}: remora.dev/allow`) }
      if (a['remora.dev/default-policy'] !== undefined) t.ok((DEFAULT_POLICIES as readonly string[]).includes(a['remora.dev/default-policy']), `${file}: remora.dev/default-policy`)
    }
  }
  t.ok(seen > 0, 'an example sets an allow list')
})

t.test('the image runs Node 24 as UID 2102 and exposes the sidecar and control-plane ports', async (t) => {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
  t.match(dockerfile, /^FROM node:24[-\w.]*$/m)
  t.match(dockerfile, /^USER 2102:2102$/m)
  t.match(dockerfile, /^EXPOSE 15001 15006 15000 15012 15014$/m)
  t.match(dockerfile, /^ENTRYPOINT \["node", "\/opt\/remora\/dist\/cli\.js"\]$/m)
})
