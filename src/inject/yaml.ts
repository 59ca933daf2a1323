// `remora inject` on YAML text: every workload found (also inside `kind: List`) gets the sidecar
// (injectPod); the difference is written into the parsed document node by node, so its comments and key
// order stay. A document nothing was added to is copied byte for byte.
import { Composer, isAlias, isMap, isNode, isPair, isScalar, isSeq, LineCounter, Parser, type Document, type Node, type YAMLMap, type YAMLSeq } from 'yaml'
import { RemoraError, type RemoraErrorCode } from '../errors.ts'
import { INJECT_ANNOTATION, injectPod, type MeshWide, type OuterAnnotations } from '../injection/pod.ts'
import { diff, segmentsOf, type PatchOp } from '../injection/patch.ts'

export interface InjectYamlOptions {
  /** Names the input in messages: a file name, or `<stdin>`. */
  readonly source: string
  readonly mesh: MeshWide
  /** The namespace's annotations (offline there is no Namespace object): only remora.dev/inject counts. */
  readonly namespaceAnnotations?: Readonly<Record<string, string>>
}

export interface InjectYamlResult {
  readonly output: string
  /** The objects the sidecar was added to, e.g. `Deployment demo/web`. */
  readonly injected: readonly string[]
  /** Workloads left as they were and why, one line each (`<source>:<line>: <object>: <why>`). */
  readonly warnings: readonly string[]
}

/** Where each kind keeps its pod template, and the API groups it is that kind in (`''`: the core group). */
const WORKLOADS: Readonly<Record<string, { readonly groups: readonly string[], readonly template: readonly string[] }>> = {
  Pod: { groups: [''], template: [] },
  Deployment: { groups: ['apps', 'extensions'], template: ['spec', 'template'] },
  StatefulSet: { groups: ['apps'], template: ['spec', 'template'] },
  DaemonSet: { groups: ['apps', 'extensions'], template: ['spec', 'template'] },
  ReplicaSet: { groups: ['apps', 'extensions'], template: ['spec', 'template'] },
  ReplicationController: { groups: [''], template: ['spec', 'template'] },
  Job: { groups: ['batch'], template: ['spec', 'template'] },
  CronJob: { groups: ['batch'], template: ['spec', 'jobTemplate', 'spec', 'template'] },
}

type Json = Record<string, unknown>
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v)
const groupOf = (apiVersion: unknown): string | undefined =>
  typeof apiVersion !== 'string' ? undefined : apiVersion.includes('/') ? apiVersion.slice(0, apiVersion.indexOf('/')) : ''

function at (value: unknown, path: readonly (string | number)[]): unknown {
  let v = value
  for (const s of path) v = Array.isArray(v) ? v[Number(s)] : isObject(v) ? v[s] : undefined
  return v
}

class Problems {
  readonly lines: string[] = []
  code: RemoraErrorCode | undefined
  add (code: RemoraErrorCode, where: string, message: string): void {
    this.code ??= code
    for (const line of message.split('\n')) this.lines.push(`${where}: ${line}`)
  }
}

/** What one object needs: the patch to its pod spec (paths from the document's root), or a warning. */
interface Plan { readonly object: string, readonly ops: readonly PatchOp[], readonly warning?: string }

/**
 * Adds the sidecar to every workload in `text`. Throws a RemoraError listing every problem (one per
 * line, with file and line) when any object cannot be injected: nothing is half written.
 */
export function injectYaml (text: string, options: InjectYamlOptions): InjectYamlResult {
  const { source } = options
  const lines = new LineCounter()
  const tokens = Array.from(new Parser(lines.addNewLine).parse(text))
  const docs = Array.from(new Composer({ version: '1.1', prettyErrors: false }).compose(tokens))
  const lineOf = (offset: number | undefined): number => offset === undefined ? 1 : lines.linePos(offset).line

  const syntax = docs.flatMap((d) => d.errors.map((e) => {
    const { line, col } = lines.linePos(e.pos[0])
    return `${source}:${line}:${col}: ${e.message}`
  }))
  if (syntax.length > 0) throw new RemoraError('REMORA_INJECT_YAML', `not valid YAML, nothing written:\n  ${syntax.join('\n  ')}`)

  // Each document's own text: from the end of the previous document (and its `...`) to the end of its own.
  // Comments and directives between documents belong to the next one, as the composer attaches them.
  const starts: number[] = []
  let boundary = 0
  tokens.forEach((token, i) => {
    if (token.type !== 'document') return
    starts.push(boundary)
    const next = tokens[i + 1]?.type === 'doc-end' ? i + 2 : i + 1
    boundary = next < tokens.length ? tokens[next].offset : text.length
  })
  if (starts.length !== docs.length) throw new Error(`remora inject: ${docs.length} documents composed from ${starts.length} document tokens`)

  const problems = new Problems()
  const injected: string[] = []
  const warnings: string[] = []
  const out = docs.map((doc, n) => {
    const chunk = text.slice(starts[n], starts[n + 1] ?? text.length)
    const plans = planDocument(doc, options, lineOf, problems)
    for (const p of plans) {
      if (p.warning !== undefined) warnings.push(p.warning)
      else if (p.ops.length > 0) injected.push(p.object)
    }
    const ops = plans.flatMap((p) => p.ops)
    if (ops.length === 0) return chunk
    try {
      applyToDocument(doc, ops)
    } catch (err) {
      if (!(err instanceof RemoraError)) throw err
      problems.add(err.code, `${source}:${lineOf(doc.contents?.range[0])}`, err.message)
      return chunk
    }
    return render(doc, chunk)
  })
  if (problems.code !== undefined) {
    const list = problems.lines
    throw new RemoraError(problems.code, list.length === 1 ? `${list[0]}; nothing written` : `${list.length} problems, nothing written:\n  ${list.join('\n  ')}`)
  }
  return { output: docs.length === 0 ? text : out.join(''), injected, warnings }
}

function planDocument (doc: Document.Parsed, options: InjectYamlOptions, lineOf: (offset: number | undefined) => number, problems: Problems): Plan[] {
  let value: unknown
  try {
    value = doc.toJS({ maxAliasCount: 1000 })
  } catch (err) {
    // An alias without its anchor (anchors do not cross documents), or an alias bomb.
    problems.add('REMORA_INJECT_YAML', `${options.source}:${lineOf(doc.contents?.range[0])}`, (err as Error).message)
    return []
  }
  if (!isObject(value)) return []
  const lineAt = (path: readonly (string | number)[]): number => {
    const node = path.length === 0 ? doc.contents : doc.getIn(path, true)
    return lineOf(isScalar(node) || isMap(node) || isSeq(node) ? node.range?.[0] : doc.contents?.range[0])
  }
  const objects: Array<{ obj: unknown, base: readonly (string | number)[] }> =
    value.kind === 'List' && groupOf(value.apiVersion) === '' && Array.isArray(value.items)
      ? value.items.map((obj, i) => ({ obj, base: ['items', i] }))
      : [{ obj: value, base: [] }]
  return objects.flatMap(({ obj, base }) => {
    const where = `${options.source}:${lineAt(base)}`
    try {
      const plan = planObject(obj, base, options)
      if (plan === undefined) return []
      return [plan.warning !== undefined ? { ...plan, warning: `${where}: ${plan.warning}` } : plan]
    } catch (err) {
      if (!(err instanceof RemoraError)) throw err
      problems.add(err.code, where, err.message)
      return []
    }
  })
}

function planObject (obj: unknown, base: readonly (string | number)[], options: InjectYamlOptions): Plan | undefined {
  if (!isObject(obj) || typeof obj.kind !== 'string') return undefined
  const kind = obj.kind
  const workload = Object.hasOwn(WORKLOADS, kind) ? WORKLOADS[kind] : undefined
  if (workload === undefined || !workload.groups.includes(groupOf(obj.apiVersion) ?? '-')) return undefined
  const metadata = isObject(obj.metadata) ? obj.metadata : {}
  const namespace = typeof metadata.namespace === 'string' ? `${metadata.namespace}/` : ''
  const generated = typeof metadata.generateName === 'string' ? metadata.generateName.replace(/-$/, '') : undefined
  const name = typeof metadata.name === 'string' ? metadata.name : generated
  const object = `${kind} ${namespace}${name ?? '(no name)'}`
  if (name === undefined) throw new RemoraError('REMORA_INJECT_OBJECT', `${object}: metadata.name is missing`)

  const template = workload.template.length === 0 ? obj : at(obj, workload.template)
  if (!isObject(template)) throw new RemoraError('REMORA_INJECT_OBJECT', `${object}: there is no pod template at ${workload.template.join('.')}`)
  const outer: OuterAnnotations[] = []
  const misplaced = `only ${INJECT_ANNOTATION} is read there; pod settings go on the pod template (${[...workload.template, 'metadata', 'annotations'].join('.')}), which the sidecar reads`
  if (kind === 'CronJob') outer.push({ where: 'spec.jobTemplate.metadata', annotations: at(obj, ['spec', 'jobTemplate', 'metadata', 'annotations']) as Json | undefined, misplaced })
  if (workload.template.length > 0) outer.push({ where: `the ${kind}'s own metadata`, annotations: metadata.annotations as Json | undefined, misplaced })
  if (options.namespaceAnnotations !== undefined) {
    outer.push({ where: '--namespace-annotations', annotations: options.namespaceAnnotations, misplaced: `only ${INJECT_ANNOTATION} is read from the namespace` })
  }

  const pod = { metadata: isObject(template.metadata) ? template.metadata : undefined, spec: template.spec }
  const result = injectPod(pod, options.mesh, { object, workload: name, outer })
  if (!result.injected) return { object, ops: [], warning: result.why }
  return { object, ops: diff(template.spec, result.spec, [...base, ...workload.template, 'spec']) }
}

/**
 * The node at `segments`, for editing. Aliases, anchored nodes and merge keys on the way are refused: an
 * edit there would change every place that refers to it too.
 */
function nodeAt (doc: Document.Parsed, segments: readonly string[], path: string): unknown {
  let node: unknown = doc.contents
  const shared = (n: unknown): boolean => n === undefined || isAlias(n) || ((isMap(n) || isSeq(n)) && n.anchor !== undefined)
  for (const s of segments) {
    if (shared(node)) break
    node = isMap(node) ? node.get(s, true) : isSeq(node) ? node.get(Number(s), true) : undefined
  }
  if (shared(node)) {
    throw new RemoraError('REMORA_INJECT_OBJECT', `cannot edit ${path.replace(/^\//, '').replace(/\//g, '.')}: it is written with a YAML anchor, alias or merge key (&, *, <<) and other places would change with it; write it out in full`)
  }
  return node
}

/**
 * Writes the operations into the document. A key added where one was just removed takes its place (a
 * probe's tcpSocket becomes its httpGet where it stood); a new initContainers goes before containers. A
 * replaced value loses its comment, which spoke of the old value.
 */
function applyToDocument (doc: Document.Parsed, ops: readonly PatchOp[]): void {
  const node = (value: unknown): Node => doc.createNode(value, { aliasDuplicateObjects: false })
  const removedAt = new Map<YAMLMap, number>()
  for (const op of ops) {
    const segments = segmentsOf(op.path)
    const last = segments[segments.length - 1]
    const parent = nodeAt(doc, segments.slice(0, -1), op.path)
    if (isSeq(parent)) {
      const i = Number(last)
      if (op.op === 'add') { keepLeadingComment(parent, i); parent.items.splice(i, 0, node(op.value)) }
      else if (op.op === 'remove') parent.items.splice(i, 1)
      else parent.items[i] = node(op.value)
    } else if (isMap(parent)) {
      const index = parent.items.findIndex((p) => isScalar(p.key) ? p.key.value === last : p.key === last)
      if (op.op === 'remove') {
        if (index >= 0) { parent.items.splice(index, 1); removedAt.set(parent, index) }
        continue
      }
      if (index >= 0) { parent.items[index] = doc.createPair(last, node(op.value)); continue }
      const before = last === 'initContainers' ? parent.items.findIndex((p) => isScalar(p.key) && p.key.value === 'containers') : -1
      const at = removedAt.get(parent) ?? (before >= 0 ? before : parent.items.length)
      removedAt.delete(parent)
      keepLeadingComment(parent, at)
      parent.items.splice(at, 0, doc.createPair(last, node(op.value)))
    } else {
      throw new RemoraError('REMORA_INJECT_OBJECT', `cannot edit ${op.path}: its parent is not a map or a list`)
    }
  }
}

/**
 * A comment above the first item of a list or map belongs to the collection, so it would stay on top, above
 * an item inserted first: it is moved onto the item it was written above.
 */
function keepLeadingComment (collection: YAMLMap | YAMLSeq, index: number): void {
  const first: unknown = collection.items[0]
  if (index !== 0 || collection.commentBefore == null || first === undefined) return
  const target = isPair(first) ? first.key : first
  if (!isNode(target)) return
  target.commentBefore = target.commentBefore == null ? collection.commentBefore : `${collection.commentBefore}\n${target.commentBefore}`
  collection.commentBefore = null
}

/**
 * The changed document, written in the style its own text uses where the yaml package can follow it
 * (lists indented under their key or not, spaces inside flow braces, CRLF line ends), lines never folded.
 */
function render (doc: Document.Parsed, chunk: string): string {
  // A %YAML directive is written only where this document's text had one (the composer carries them on).
  if (!/^%YAML/m.test(chunk)) doc.directives.yaml.explicit = false
  let flush = 0
  let indented = 0
  const rows = chunk.split(/\r?\n/)
  rows.forEach((row, i) => {
    const key = /^( *)[^\s#-][^#]*:\s*(#.*)?$/.exec(row)
    const item = key === null ? null : /^( *)- /.exec(rows[i + 1] ?? '')
    if (key === null || item === null) return
    if (item[1].length === key[1].length) flush++
    else if (item[1].length > key[1].length) indented++
  })
  const padded = chunk.match(/[{[] [^\s\]}]/g)?.length ?? 0
  const tight = chunk.match(/[{[][^\s\]}[{]/g)?.length ?? 0
  const out = doc.toString({ lineWidth: 0, indentSeq: flush <= indented, flowCollectionPadding: tight <= padded })
  // The yaml package writes LF and no byte order mark: a document written with either keeps it.
  return (chunk.startsWith('\uFEFF') ? '\uFEFF' : '') + (chunk.includes('\r\n') ? out.replace(/\r?\n/g, '\r\n') : out)
}
