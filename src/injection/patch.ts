// The difference of two JSON values as JSON Patch operations (RFC 6902): what `remora inject` writes
// into the YAML it was given, and what the admission webhook answers with. Made for what injectPod
// changes (inserted and appended list items, replaced fields); correct for any two values.

export type PatchOp =
  | { readonly op: 'add', readonly path: string, readonly value: unknown }
  | { readonly op: 'remove', readonly path: string }
  | { readonly op: 'replace', readonly path: string, readonly value: unknown }

type Json = Record<string, unknown>
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v)

/** A JSON Pointer (RFC 6901) from its segments. */
export const pointer = (segments: readonly (string | number)[]): string =>
  segments.map((s) => '/' + String(s).replace(/~/g, '~0').replace(/\//g, '~1')).join('')

/** The segments of a JSON Pointer. */
export const segmentsOf = (path: string): string[] =>
  path === '' ? [] : path.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))

export function deepEqual (a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => deepEqual(x, b[i]))
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a)
    return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && deepEqual(a[k], b[k]))
  }
  return false
}

/** Two list items are the same item (to be compared field by field) when they have the same name, else when equal. */
const sameItem = (a: unknown, b: unknown): boolean =>
  isObject(a) && isObject(b) && typeof a.name === 'string' && typeof b.name === 'string' ? a.name === b.name : deepEqual(a, b)

/** The operations that turn `before` into `after`, under `path` (segments). */
export function diff (before: unknown, after: unknown, path: readonly (string | number)[] = []): PatchOp[] {
  const out: PatchOp[] = []
  walk(before, after, [...path], out)
  return out
}

function walk (a: unknown, b: unknown, path: (string | number)[], out: PatchOp[]): void {
  if (isObject(a) && isObject(b)) {
    for (const k of Object.keys(a)) if (!Object.hasOwn(b, k)) out.push({ op: 'remove', path: pointer([...path, k]) })
    for (const [k, v] of Object.entries(b)) {
      if (Object.hasOwn(a, k)) walk(a[k], v, [...path, k], out)
      else out.push({ op: 'add', path: pointer([...path, k]), value: v })
    }
    return
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length === b.length) {
      b.forEach((v, i) => walk(a[i], v, [...path, i], out))
      return
    }
    // Walk `after`: an item matching the next unmatched one of `before` is compared, any other is inserted
    // there; what is left of `before` then sits after all of `after`, and is removed from the end.
    let j = 0
    b.forEach((v, i) => {
      if (j < a.length && sameItem(a[j], v)) walk(a[j++], v, [...path, i], out)
      else out.push({ op: 'add', path: pointer([...path, i]), value: v })
    })
    for (let k = a.length - 1; k >= j; k--) out.push({ op: 'remove', path: pointer([...path, b.length + k - j]) })
    return
  }
  if (!deepEqual(a, b)) out.push({ op: 'replace', path: pointer(path), value: b })
}

/** Applies operations to a copy of `doc` (for tests, and to check a patch before it is sent). */
export function applyPatch<T> (doc: T, ops: readonly PatchOp[]): T {
  let root: unknown = structuredClone(doc)
  for (const op of ops) {
    const segs = segmentsOf(op.path)
    if (segs.length === 0) {
      if (op.op === 'remove') throw new Error('cannot remove the whole document')
      root = structuredClone(op.value)
      continue
    }
    const last = segs[segs.length - 1]
    let parent: unknown = root
    for (const s of segs.slice(0, -1)) {
      parent = Array.isArray(parent) ? parent[Number(s)] : isObject(parent) ? parent[s] : undefined
      if (parent === undefined) throw new Error(`${op.op} ${op.path}: no such parent`)
    }
    if (Array.isArray(parent)) {
      const i = last === '-' ? parent.length : Number(last)
      if (!Number.isInteger(i) || i < 0 || i > parent.length || (op.op !== 'add' && i === parent.length)) throw new Error(`${op.op} ${op.path}: index out of range`)
      if (op.op === 'add') parent.splice(i, 0, structuredClone(op.value))
      else if (op.op === 'remove') parent.splice(i, 1)
      else parent[i] = structuredClone(op.value)
    } else if (isObject(parent)) {
      if (op.op !== 'add' && !Object.hasOwn(parent, last)) throw new Error(`${op.op} ${op.path}: no such member`)
      if (op.op === 'remove') delete parent[last]
      else parent[last] = structuredClone(op.value)
    } else {
      throw new Error(`${op.op} ${op.path}: the parent is not a container`)
    }
  }
  return root as T
}
