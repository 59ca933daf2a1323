// Black-box, Kubernetes source: a real `remora control` on the in-test API server warns once per
// Service or Pod about each remora.dev/* annotation that has no effect yet, and counts the objects
// carrying one in remora_control_annotations_without_effect.
import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FakeKubeApi, pod, service } from '../harness/kube-api.ts'
import { ControlProcess } from '../harness/control.ts'
import { samples, scrapeMetrics } from '../harness/metrics.ts'

const NS = 'shop'

interface LogLine { level: string, msg: string, service?: string, pod?: string, annotation?: string }

const annotatedPod = (name: string, ip: string, annotations: Record<string, string>): ReturnType<typeof pod> => {
  const p = pod(NS, name, { ip, serviceAccountName: 'web' })
  return { ...p, metadata: { ...p.metadata, annotations } }
}

/** The control plane's complete JSON log lines so far. */
const linesOf = (cp: ControlProcess): LogLine[] => cp.output.split('\n').slice(0, -1).filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as LogLine)

/** Resolves with the log lines once `predicate` holds over them, checked on every chunk of output; fails after `ms`. */
function untilLogged (cp: ControlProcess, predicate: (lines: LogLine[]) => boolean, ms = 10_000): Promise<LogLine[]> {
  return new Promise((resolve, reject) => {
    const stdout = cp.proc.stdout
    const timer = setTimeout(() => { done(); reject(new Error(`log condition not met in ${ms} ms:\n${cp.output}`)) }, ms)
    const done = (): void => { clearTimeout(timer); stdout?.off('data', check); cp.proc.off('exit', exited) }
    // ControlProcess's own listener came first, so cp.output already holds the chunk.
    const check = (): void => { const lines = linesOf(cp); if (predicate(lines)) { done(); resolve(lines) } }
    const exited = (): void => { done(); reject(new Error(`remora control exited:\n${cp.output}`)) }
    stdout?.on('data', check)
    cp.proc.on('exit', exited)
    check()
  })
}

const withoutEffect = (lines: LogLine[]): LogLine[] => lines.filter((l) => l.level === 'warn' && / has no effect on the control plane /.test(l.msg))

t.test('a Service and a Pod with annotations that do nothing yet: one warning each, counted; an update says nothing new', async (t) => {
  const kube = await FakeKubeApi.start()
  t.teardown(() => kube.close())
  const dir = mkdtempSync(join(tmpdir(), 'remora-kube-'))
  const kubeconfig = join(dir, 'kubeconfig')
  writeFileSync(kubeconfig, kube.kubeConfig().exportConfig())
  // opaque-ports and skip-outbound-ports have an effect (the Service's ports; remora init): not warned about.
  kube.apply(service(NS, 'db', { annotations: { 'remora.dev/proxy-image': 'remora:next', 'remora.dev/opaque-ports': '5432', 'remora.dev/timeout': '2s' } }))
  kube.apply(annotatedPod('web-1', '10.0.0.1', { 'remora.dev/skip-outbound-ports': '3306', 'remora.dev/inject': 'enabled', 'remora.dev/proxy-image': 'remora:next', 'remora.dev/default-policy': 'deny' }))
  const cp = new ControlProcess([], { KUBECONFIG: kubeconfig, REMORA_SOURCE: 'kubernetes' })
  t.teardown(() => cp.stop('SIGKILL'))
  await cp.start()

  const warned = withoutEffect(await untilLogged(cp, (lines) => withoutEffect(lines).length >= 3))
  t.same(warned.map((l) => l.msg).sort(), [
    'Pod shop/web-1: annotation remora.dev/inject has no effect on the control plane (it is read once, when a pod is created: by the admission webhook (remora control, remora injector) or by remora inject; put it on the pod template, or label the namespace)',
    'Pod shop/web-1: annotation remora.dev/proxy-image has no effect on the control plane (it is read once, when a pod is created: by the admission webhook (remora control, remora injector) or by remora inject; put it on the pod template)',
    'Service shop/db: annotation remora.dev/proxy-image has no effect on the control plane (it is read once, when a pod is created: by the admission webhook (remora control, remora injector) or by remora inject; put it on the pod template)',
  ])
  t.same(warned.map((l) => `${l.service ?? l.pod} ${l.annotation}`).sort(), ['shop/db remora.dev/proxy-image', 'shop/web-1 remora.dev/inject', 'shop/web-1 remora.dev/proxy-image'])

  // The gauge is set before the line is written.
  let metrics = await scrapeMetrics(cp.adminUrl)
  const series = (kind: string, annotation: string): string | undefined =>
    samples(metrics, 'remora_control_annotations_without_effect', { kind, annotation })[0]?.value
  t.equal(series('Service', 'remora.dev/proxy-image'), '1')
  t.equal(series('Pod', 'remora.dev/inject'), '1')
  t.equal(series('Pod', 'remora.dev/proxy-image'), '1')
  t.equal(series('Service', 'remora.dev/inject'), '0', 'every series is there from the start')
  t.equal(series('Service', 'remora.dev/opaque-ports'), undefined, 'no series for annotations that have an effect')
  t.equal(series('Pod', 'remora.dev/skip-outbound-ports'), undefined)
  t.notOk(samples(metrics, 'remora_control_source_errors_total', { kind: 'malformed' }).length > 0, 'not counted as malformed objects (opaque-ports "5432" is a good list)')
  t.notOk(linesOf(cp).some((l) => /opaque-ports|skip-outbound-ports/.test(l.msg)), 'nothing logged about them')

  // Update both objects, then add one more of each kind: the Service recomputes in the order its
  // changes came, and pod events are handled in order, so once the new objects' lines are out the
  // updates were handled too.
  kube.apply(service(NS, 'db', { annotations: { 'remora.dev/proxy-image': 'remora:next', 'remora.dev/opaque-ports': '5432', 'remora.dev/timeout': '3s' } }))
  kube.apply(annotatedPod('web-1', '10.0.0.11', { 'remora.dev/skip-outbound-ports': '3306', 'remora.dev/inject': 'enabled', 'remora.dev/proxy-image': 'remora:next' }))
  kube.apply(service(NS, 'cache', { annotations: { 'remora.dev/inject': 'enabled' } }))
  kube.apply(annotatedPod('web-2', '10.0.0.2', { 'remora.dev/skip-inbound-ports': '9090', 'remora.dev/proxy-image': 'remora:next' }))
  const after = withoutEffect(await untilLogged(cp, (lines) => withoutEffect(lines).length >= 5 &&
    withoutEffect(lines).some((l) => l.service === `${NS}/cache`) && withoutEffect(lines).some((l) => l.pod === `${NS}/web-2`)))
  t.same(after.map((l) => `${l.service ?? l.pod} ${l.annotation}`).sort(), [
    'shop/cache remora.dev/inject', 'shop/db remora.dev/proxy-image', 'shop/web-1 remora.dev/inject', 'shop/web-1 remora.dev/proxy-image', 'shop/web-2 remora.dev/proxy-image',
  ], 'the updated Service and Pod were not logged again')
  metrics = await scrapeMetrics(cp.adminUrl)
  t.same([series('Service', 'remora.dev/proxy-image'), series('Service', 'remora.dev/inject'), series('Pod', 'remora.dev/inject'), series('Pod', 'remora.dev/proxy-image')], ['1', '1', '1', '2'],
    'objects counted once however often they change')
})
