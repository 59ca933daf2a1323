// The JSON Patch between two values: applied to the first it gives the second, with the few operations
// an injection needs (inserted and appended items, replaced fields), so the webhook can answer with it.
import t from 'tap'
import { readSettings, InjectSettings } from '../../src/config/env.ts'
import { injectPod } from '../../src/injection/pod.ts'
import { applyPatch, diff, pointer, segmentsOf } from '../../src/injection/patch.ts'

t.test('pointers escape ~ and /', async (t) => {
  t.equal(pointer(['metadata', 'annotations', 'remora.dev/inject', 0, 'a~b']), '/metadata/annotations/remora.dev~1inject/0/a~0b')
  t.same(segmentsOf('/metadata/annotations/remora.dev~1inject/0/a~0b'), ['metadata', 'annotations', 'remora.dev/inject', '0', 'a~b'])
  t.same(segmentsOf(''), [])
})

t.test('diff then apply gives the second value, whatever the two are', async (t) => {
  const cases: Array<[unknown, unknown]> = [
    [{ a: 1, b: [1, 2, 3] }, { a: 2, b: [0, 1, 2, 3, 4] }],
    [{ a: [1, 2, 3] }, { a: [3] }],
    [{ a: [{ name: 'x', v: 1 }, { name: 'y' }] }, { a: [{ name: 'p' }, { name: 'x', v: 2 }, { name: 'y' }, { name: 'z' }] }],
    [{ a: [{ name: 'x' }, { name: 'y' }, { name: 'z' }] }, { a: [{ name: 'y' }] }],
    [{ a: { b: { c: 1 } }, gone: true }, { a: { b: { c: 1, d: [] } }, new: null }],
    [[1, 2], { now: 'an object' }],
    ['x', 'y'],
    [{ 'a/b': 1, 'c~d': 2 }, { 'a/b': 3 }],
  ]
  for (const [a, b] of cases) t.same(applyPatch(a, diff(a, b)), b, JSON.stringify([a, b]))
  t.same(diff({ a: [1] }, { a: [1] }), [], 'equal values: no operation')
})

t.test("an injection's patch only adds and replaces what injectPod changed", async (t) => {
  const { namespaceAnnotations: _ns, ...mesh } = readSettings(InjectSettings, {}, new Map())
  const spec = {
    initContainers: [{ name: 'migrate', image: 'm' }],
    containers: [{ name: 'web', image: 'w', ports: [{ name: 'http', containerPort: 8080 }], livenessProbe: { tcpSocket: { port: 'http' }, periodSeconds: 3 } }],
    volumes: [{ name: 'data', emptyDir: {} }],
  }
  const result = injectPod({ spec }, mesh, { object: 'Pod default/web', workload: 'web' })
  if (!result.injected) throw new Error(result.why)
  const ops = diff(spec, result.spec, ['spec'])
  t.same(applyPatch({ spec }, ops), { spec: result.spec })
  t.same(ops.map((o) => `${o.op} ${o.path}`), [
    'add /spec/initContainers/0',
    'add /spec/initContainers/1',
    'remove /spec/containers/0/livenessProbe/tcpSocket',
    'add /spec/containers/0/livenessProbe/httpGet',
    'add /spec/volumes/1',
    'add /spec/volumes/2',
    'add /spec/volumes/3',
  ])
})
