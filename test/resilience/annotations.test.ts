// Service annotations carry the same policy as the mesh file; each bad value names Service and key.
import t from 'tap'
import { policyFromAnnotations } from '../../src/resilience/annotations.ts'
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
