// Failure accrual: N consecutive failures eject with backoff; a probe restores; the share is capped.
import t from 'tap'
import type { Endpoint } from '../../src/mesh/service.ts'
import { EndpointStates } from '../../src/balancer/endpoint-state.ts'

const ep = (n: number): Endpoint => ({ address: { host: '127.0.0.1', port: n }, targetPort: 80, weight: 1, identity: 'x', key: `e${n}` })
const policy = { consecutiveFailures: 3, baseEjectionMs: 1000, maxEjectionMs: 8000, maxEjectedPercent: 50 }

t.test('eject after N consecutive failures, probe when the backoff ends, restore on success', async (t) => {
  const states = new EndpointStates(() => 0.5)
  const all = [ep(1), ep(2), ep(3)]
  t.equal(states.record(all[0], all, 'failure', 1, 0, policy), undefined)
  t.equal(states.record(all[0], all, 'success', 1, 1, policy), undefined, 'a success resets the count')
  states.record(all[0], all, 'failure', 1, 2, policy)
  states.record(all[0], all, 'failure', 1, 3, policy)
  t.equal(states.record(all[0], all, 'failure', 1, 4, policy), 'ejected')
  t.same(states.available(all, 500).map((e) => e.key), ['e2', 'e3'], 'ejected endpoint out of rotation')
  t.same(states.available(all, 1005).map((e) => e.key), ['e1', 'e2', 'e3'], 'back for a probe after the backoff')
  states.get(all[0]).inflight = 1
  t.same(states.available(all, 1005).map((e) => e.key), ['e2', 'e3'], 'one probe at a time')
  states.get(all[0]).inflight = 0
  t.equal(states.record(all[0], all, 'failure', 1, 1006, policy), 'ejected', 'a failed probe ejects again at once')
  t.ok(states.get(all[0]).ejectedUntil - 1006 >= 2000, 'with a doubled backoff')
  t.equal(states.record(all[0], all, 'success', 1, 5000, policy), 'restored')
  t.same(states.available(all, 5000).length, 3)
})

t.test('never eject more than maxEjectedPercent of a service', async (t) => {
  const states = new EndpointStates(() => 0.5)
  const all = [ep(1), ep(2)]
  for (let i = 0; i < 3; i++) states.record(all[0], all, 'failure', 1, 10, policy)
  t.ok(states.get(all[0]).isEjected(11))
  for (let i = 0; i < 5; i++) t.equal(states.record(all[1], all, 'failure', 1, 10, policy), undefined)
  t.notOk(states.get(all[1]).isEjected(11), 'the second of two stays: 100 % would exceed 50 %')
})

t.test('peak EWMA: slow samples count at once, fast ones decay it', async (t) => {
  const states = new EndpointStates()
  const s = states.get(ep(1))
  s.observe(5, 1)
  s.observe(100, 2)
  t.equal(s.rttMs, 100)
  s.observe(5, 20_000)
  t.ok(s.rttMs < 30, `decayed to ${s.rttMs.toFixed(1)} ms`)
})

t.test('failures of attempts already in flight when the endpoint was ejected do not extend the ejection', async (t) => {
  const states = new EndpointStates(() => 0.5)
  const all = [ep(1), ep(2), ep(3)]
  for (let i = 0; i < 2; i++) states.record(all[0], all, 'failure', 5, 100, policy)
  t.equal(states.record(all[0], all, 'failure', 5, 100, policy), 'ejected')
  const until = states.get(all[0]).ejectedUntil
  for (let i = 0; i < 10; i++) t.equal(states.record(all[0], all, 'failure', 50, 120, policy), undefined, 'sent before the ejection')
  t.equal(states.get(all[0]).ejectedUntil, until, 'the backoff is unchanged')
  t.equal(states.record(all[0], all, 'failure', 1500, until + 10, policy), undefined, 'a slow one ending after the ejection is not the probe either')
  t.equal(states.record(all[0], all, 'failure', 5, until + 20, policy), 'ejected', 'the probe failing ejects again')
  t.ok(states.get(all[0]).ejectedUntil - (until + 20) >= 2000, 'with a doubled backoff')
})
