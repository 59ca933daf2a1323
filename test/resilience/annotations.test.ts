// Service annotations carry the same policy as the mesh file; each bad value names Service and key, and
// each annotation that does nothing yet is a warning naming the object and the annotation.
import t from 'tap'
import { ANNOTATIONS_WITHOUT_EFFECT, annotationsWithoutEffect, policyFromAnnotations } from '../../src/resilience/annotations.ts'
import { servicePolicy } from '../../src/resilience/policy-file.ts'

t.test('annotations become the service policy', async (t) => {
  const { policy, errors } = policyFromAnnotations({
    'remora.dev/balancer': 'least-request',
    'remora.dev/timeout': '2s',
    'remora.dev/retry-on': '5xx, unavailable',
    'remora.dev/retry-attempts': '2',
    'remora.dev/retry-budget-ratio': '0.1',
    'remora.dev/failure-accrual': '5',
    'remora.dev/ejection-max': '30s',
    'remora.dev/max-concurrent': '100',
    'remora.dev/inject': 'enabled',
    'app.kubernetes.io/name': 'web',
  }, 'demo/web')
  t.same(errors, [])
  const p = servicePolicy(policy)
  t.equal(p.balancer, 'least-request')
  t.equal(p.requestTimeoutMs, 2000)
  t.same(p.retry.on, ['5xx', 'unavailable'])
  t.equal(p.retry.attempts, 2)
  t.equal(p.retry.budget.ratio, 0.1)
  t.equal(p.retry.budget.minPerSecond, 10, 'unset keys keep their defaults')
  t.equal(p.circuit.consecutiveFailures, 5)
  t.equal(p.circuit.maxEjectionMs, 30_000)
  t.equal(p.limits.maxConcurrent, 100)
})

t.test('a bad annotation is reported with the Service and the key, and the default applies', async (t) => {
  const { policy, errors } = policyFromAnnotations({
    'remora.dev/timeout': '5',
    'remora.dev/retry-on': '5xx,teapot',
    'remora.dev/retry-attempts': '99',
    'remora.dev/balancer': 'random',
    'remora.dev/timeuot': '1s',
  }, 'demo/web')
  t.match(errors, [
    /^Service demo\/web: annotation remora\.dev\/timeout: expected a duration such as 500ms/,
    /^Service demo\/web: annotation remora\.dev\/retry-on: unknown retry condition "teapot"/,
    /^Service demo\/web: annotation remora\.dev\/retry-attempts: expected a whole number from 1 to 10, got "99"/,
    /^Service demo\/web: annotation remora\.dev\/balancer: expected one of p2c-ewma, least-request, round-robin/,
    /^Service demo\/web: annotation remora\.dev\/timeuot is not known/,
  ])
  t.equal(servicePolicy(policy).requestTimeoutMs, 0)
})

t.test('annotations that do nothing yet are warnings, apart from errors, each naming the Service and the annotation', async (t) => {
  const { policy, errors, warnings } = policyFromAnnotations({
    'remora.dev/inject': 'enabled',
    'remora.dev/opaque-ports': '5432',
    'remora.dev/skip-inbound-ports': '9090',
    'remora.dev/skip-outbound-ports': '3306',
    'remora.dev/proxy-image': 'remora:next',
    'remora.dev/protocol': 'grpc',
    'remora.dev/default-policy': 'deny',
    'remora.dev/allow': '8080=ns:demo',
    'remora.dev/timeout': '2s',
    'remora.dev/timeuot': '1s',
  }, 'demo/web')
  t.match(errors, [
    /^Service demo\/web: annotation remora\.dev\/skip-inbound-ports belongs on the pod \(remora init and the sidecar read it there/,
    /^Service demo\/web: annotation remora\.dev\/skip-outbound-ports belongs on the pod/,
    /^Service demo\/web: annotation remora\.dev\/timeuot is not known/,
  ], 'errors: a pod annotation put on a Service says where it belongs; a misspelt key is not known')
  t.equal(servicePolicy(policy).requestTimeoutMs, 2000, 'the policy still applies')
  t.same(warnings, [
    { annotation: 'remora.dev/inject', message: 'Service demo/web: annotation remora.dev/inject has no effect on the control plane (it is read once, when a pod is created: by the admission webhook (remora control, remora injector) or by remora inject; put it on the pod template, or label the namespace)' },
    { annotation: 'remora.dev/proxy-image', message: 'Service demo/web: annotation remora.dev/proxy-image has no effect on the control plane (it is read once, when a pod is created: by the admission webhook (remora control, remora injector) or by remora inject; put it on the pod template)' },
  ], 'protocol, opaque-ports, default-policy and allow have effects: no warning')
  t.same(policyFromAnnotations({ 'remora.dev/timeout': '2s' }, 'demo/web').warnings, [], 'none without them')
})

t.test('annotationsWithoutEffect names any object, whatever the value, and only remora.dev/ keys of its own', async (t) => {
  t.same(annotationsWithoutEffect({ 'remora.dev/inject': 'disabled', constructor: 'x', 'example.com/opaque-ports': '1' }, 'Pod demo/web-1'), [
    { annotation: 'remora.dev/inject', message: 'Pod demo/web-1: annotation remora.dev/inject has no effect on the control plane (it is read once, when a pod is created: by the admission webhook (remora control, remora injector) or by remora inject; put it on the pod template, or label the namespace)' },
  ])
  t.same(Object.keys(ANNOTATIONS_WITHOUT_EFFECT).sort(), ['remora.dev/inject', 'remora.dev/proxy-image'], 'opaque-ports and the skip lists have effects now (proxy and remora init)')
})
