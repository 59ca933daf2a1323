// Strict, offline validation of Kubernetes objects against the API schemas of Kubernetes 1.36, as
// `kubectl apply --validate=strict` would do against a server: unknown fields at any depth, wrong
// types, enums, required fields, IntOrString and Quantity values are errors.
//
// Two sources, both generated from the OpenAPI spec of Kubernetes release-1.36, both installed:
// - the models of `@kubernetes/client-node` (each class's static `attributeTypeMap`: every field's
//   JSON name and type) say which fields exist, so anything else is an unknown field;
// - the validators `kubernetes-models` compiled from the same spec (with its enums restored) check
//   the values: types, maps, enums, required fields, IntOrString, Quantity, int32/int64 and base64.
//   On their own they accept unknown fields (a misspelled `containers[0].resource` passes), which
//   is why the first source exists here.
// On top of the spec, two checks of what a manifest applied with `kubectl apply` needs: a top-level
// `metadata.name`, and an `image` on every container (the spec leaves it optional for templates).
// Not checked: what the API server enforces in code rather than in its schema (name and label
// syntax, a selector matching its template, port ranges, unique container names, which
// restartPolicy an init container may take, one volume source per volume), CEL rules, defaulting,
// admission (Pod Security, webhooks), and custom resources (an unknown kind is an error).
import * as clientModels from '@kubernetes/client-node'

/** The API versions and kinds checked; anything else is reported as an unknown kind. */
const KINDS: Record<string, { group: string, kinds: string[] }> = {
  v1: { group: 'Core', kinds: ['Namespace', 'ServiceAccount', 'ConfigMap', 'Secret', 'Service', 'Pod', 'PersistentVolumeClaim', 'ResourceQuota', 'LimitRange'] },
  'apps/v1': { group: 'Apps', kinds: ['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet'] },
  'batch/v1': { group: 'Batch', kinds: ['Job', 'CronJob'] },
  'policy/v1': { group: 'Policy', kinds: ['PodDisruptionBudget'] },
  'rbac.authorization.k8s.io/v1': { group: 'Rbac', kinds: ['Role', 'RoleBinding', 'ClusterRole', 'ClusterRoleBinding'] },
  'admissionregistration.k8s.io/v1': { group: 'Admissionregistration', kinds: ['MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration'] },
  'networking.k8s.io/v1': { group: 'Networking', kinds: ['NetworkPolicy', 'Ingress'] },
  'autoscaling/v2': { group: 'Autoscaling', kinds: ['HorizontalPodAutoscaler'] },
}

/** The Kubernetes version both schema sources were generated from. */
export const SCHEMA_KUBERNETES_VERSION = '1.36'

/** The kinds validateStrict knows, as `apiVersion kind` (plus `v1 List`). */
export const KNOWN_KINDS: readonly string[] = [...Object.entries(KINDS).flatMap(([apiVersion, { kinds }]) => kinds.map((k) => `${apiVersion} ${k}`)), 'v1 List']

interface Attribute { name: string, baseName: string, type: string, format: string }
interface Model { attributeTypeMap: Attribute[] }
interface AjvError { instancePath: string, keyword: string, params: Record<string, unknown>, message?: string }
type AjvValidate = ((data: unknown) => boolean) & { errors?: AjvError[] | null }

const MODELS = clientModels as unknown as Record<string, Model | undefined>

function versionPart (apiVersion: string): string {
  const v = apiVersion.split('/').pop() ?? apiVersion
  return v[0].toUpperCase() + v.slice(1)
}

interface KindSchema { model: string, validate: AjvValidate }
const SCHEMAS = new Map<string, KindSchema>()
await Promise.all(Object.entries(KINDS).flatMap(([apiVersion, { group, kinds }]) => kinds.map(async (kind) => {
  const model = `${versionPart(apiVersion)}${kind}`
  const compiled = `IoK8sApi${group}${versionPart(apiVersion)}${kind}`
  if (MODELS[model]?.attributeTypeMap === undefined) throw new Error(`k8s-schema: @kubernetes/client-node has no model ${model}`)
  const mod = await import(`kubernetes-models/_schemas/${compiled}`) as { validate: AjvValidate }
  SCHEMAS.set(`${apiVersion} ${kind}`, { model, validate: mod.validate })
})))

type Segment = string | number

function renderPath (path: readonly Segment[]): string {
  let out = ''
  for (const s of path) {
    if (typeof s === 'number') out += `[${s}]`
    else if (/^[A-Za-z_$][\w$-]*$/.test(s)) out += out === '' ? s : `.${s}`
    else out += `[${JSON.stringify(s)}]`
  }
  return out === '' ? '(document)' : out
}

function describe (value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'array'
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number'
  return typeof value
}

function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** A JSON pointer from ajv as path segments (array indexes as numbers), and the value it points at. */
function resolvePointer (doc: unknown, pointer: string): { path: Segment[], value: unknown } {
  const path: Segment[] = []
  let value: unknown = doc
  for (const raw of pointer === '' ? [] : pointer.slice(1).split('/')) {
    const key = raw.replaceAll('~1', '/').replaceAll('~0', '~')
    if (Array.isArray(value)) { path.push(Number(key)); value = value[Number(key)] } else { path.push(key); value = isObject(value) ? value[key] : undefined }
  }
  return { path, value }
}

const PRIMITIVES = new Set(['string', 'number', 'boolean', 'Date', 'IntOrString', 'any', 'object'])

/** Unknown fields, at every depth, by the client-node models; values are left to the compiled validators. */
function unknownFields (value: unknown, type: string, path: Segment[], out: Array<[Segment[], string]>): void {
  if (value === null || value === undefined || PRIMITIVES.has(type)) return
  const array = /^Array<(.+)>$/.exec(type)
  if (array !== null) {
    if (Array.isArray(value)) value.forEach((item, i) => unknownFields(item, array[1], [...path, i], out))
    return
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type)
  if (map !== null) {
    if (isObject(value)) for (const [k, v] of Object.entries(value)) unknownFields(v, map[1], [...path, k], out)
    return
  }
  const model = MODELS[type]
  if (model?.attributeTypeMap === undefined) { out.push([path, `the schema source has no type ${type} (harness bug)`]); return }
  if (!isObject(value)) return
  const fields = new Map(model.attributeTypeMap.map((a) => [a.baseName, a]))
  for (const [k, v] of Object.entries(value)) {
    const field = fields.get(k)
    if (field === undefined) out.push([[...path, k], 'unknown field'])
    else unknownFields(v, field.type, [...path, k], out)
  }
  // Beyond the spec: kubectl apply of a workload whose container has no image is refused by the API server.
  if (type === 'V1Container' && value.image === undefined) out.push([[...path, 'image'], 'required field missing'])
}

/** The compiled validator's errors in this module's words: one message per path. */
function valueErrors (validate: AjvValidate, doc: unknown, out: Array<[Segment[], string]>): void {
  if (validate(doc)) return
  const byPath = new Map<string, AjvError[]>()
  for (const e of validate.errors ?? []) byPath.set(e.instancePath, [...(byPath.get(e.instancePath) ?? []), e])
  for (const [pointer, errors] of byPath) {
    const { path, value } = resolvePointer(doc, pointer)
    if (errors.some((e) => e.keyword === 'oneOf')) {
      const types = new Set(errors.filter((e) => e.keyword === 'type').map((e) => String(e.params.type)))
      const quantity = errors.some((e) => e.keyword === 'format' && e.params.format === 'quantity')
      if (quantity || (types.has('number') && types.has('string'))) {
        out.push([path, typeof value === 'string' ? `${JSON.stringify(value)} is not a quantity (such as 100m, 64Mi, 1.5)` : `expected a quantity (string or number), got ${describe(value)}`])
      } else if (types.has('integer') && types.has('string')) {
        out.push([path, typeof value === 'number' ? `${value} is not an int32` : `expected integer or string, got ${describe(value)}`])
      } else {
        out.push([path, `${JSON.stringify(value)} matches none of the allowed forms`])
      }
      continue
    }
    for (const e of errors) {
      switch (e.keyword) {
        case 'type': out.push([path, `expected ${String(e.params.type)}, got ${describe(value)}`]); break
        case 'required': out.push([[...path, String(e.params.missingProperty)], 'required field missing']); break
        case 'enum': out.push([path, `${JSON.stringify(value)} is not one of ${(e.params.allowedValues as unknown[]).map(String).join(', ')}`]); break
        case 'format': out.push([path, `${JSON.stringify(value)} is not ${e.params.format === 'byte' ? 'base64' : `a valid ${String(e.params.format)}`}`]); break
        default: out.push([path, e.message ?? e.keyword])
      }
    }
  }
}

function label (doc: Record<string, unknown>): string {
  const meta = isObject(doc.metadata) ? doc.metadata : {}
  const name = typeof meta.name === 'string' ? meta.name : '<unnamed>'
  const kind = typeof doc.kind === 'string' ? doc.kind : '<no kind>'
  return typeof meta.namespace === 'string' ? `${kind} ${meta.namespace}/${name}` : `${kind} ${name}`
}

/**
 * Every reason the API server would refuse `doc` under strict field validation, as far as its
 * schema says; [] when it is valid. Each error reads `Kind namespace/name: path: problem`, e.g.
 * `Deployment demo/web: spec.template.spec.containers[0].resource: unknown field`. A `v1 List`'s
 * items are checked one by one (`List items[2]: Deployment demo/web: ...`). Kinds outside
 * KNOWN_KINDS are an error, so nothing passes unchecked.
 */
export function validateStrict (doc: unknown): string[] {
  if (!isObject(doc)) return [`(document): expected a Kubernetes object, got ${describe(doc)}`]
  const where = label(doc)
  const { apiVersion, kind } = doc
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') {
    return [`${where}: ${typeof apiVersion !== 'string' ? 'apiVersion' : 'kind'}: required field missing`]
  }
  if (kind === 'List' && apiVersion === 'v1') return validateList(doc)
  const schema = SCHEMAS.get(`${apiVersion} ${kind}`)
  if (schema === undefined) {
    const served = Object.entries(KINDS).filter(([, { kinds }]) => kinds.includes(kind)).map(([v]) => v)
    return [served.length > 0
      ? `${where}: ${kind} of apiVersion ${apiVersion} is not a kind this validator knows (it checks ${kind} of ${served.join(', ')})`
      : `${where}: unknown kind ${kind} (apiVersion ${apiVersion}): no schema to check it against`]
  }
  const found: Array<[Segment[], string]> = []
  unknownFields(doc, schema.model, [], found)
  valueErrors(schema.validate, doc, found)
  // Beyond the spec (which allows generateName instead): `kubectl apply` needs a name.
  if (doc.metadata === undefined || (isObject(doc.metadata) && doc.metadata.name === undefined)) found.push([['metadata', 'name'], 'required field missing'])
  return [...new Set(found.map(([path, problem]) => `${where}: ${renderPath(path)}: ${problem}`))]
}

const LIST_FIELDS = new Set(['apiVersion', 'kind', 'metadata', 'items'])

function validateList (doc: Record<string, unknown>): string[] {
  const errors: string[] = []
  for (const k of Object.keys(doc)) if (!LIST_FIELDS.has(k)) errors.push(`List: ${renderPath([k])}: unknown field`)
  const found: Array<[Segment[], string]> = []
  unknownFields(doc.metadata, 'V1ListMeta', ['metadata'], found)
  errors.push(...found.map(([path, problem]) => `List: ${renderPath(path)}: ${problem}`))
  if (!Array.isArray(doc.items)) {
    errors.push(`List: items: ${doc.items === undefined ? 'required field missing' : `expected array, got ${describe(doc.items)}`}`)
    return errors
  }
  doc.items.forEach((item, i) => { for (const e of validateStrict(item)) errors.push(`List items[${i}]: ${e}`) })
  return errors
}
