// Balancing policies: P2C over peak-EWMA avoids slow endpoints, weights count, retries avoid tried ones.
import t from 'tap'
import type { Endpoint } from '../../src/mesh/service.ts'
import { EndpointStates } from '../../src/balancer/endpoint-state.ts'
import { createPolicies } from '../../src/balancer/policy.ts'

const ep = (n: number, weight = 1): Endpoint => ({ address: { host: '127.0.0.1', port: 10000 + n }, targetPort: 80, weight, identity: 'x', key: `e${n}` })

/** Deterministic PRNG so the figures do not flake. */
function lcg (seed: number): () => number {
  let s = seed
  return () => { s = (s * 1664525 + 1013904223) % 2 ** 32; return s / 2 ** 32 }
}

t.test('p2c-ewma sends almost nothing to an endpoint 100 ms slower than its peers', async (t) => {
  let now = 1_000
  const states = new EndpointStates(Math.random, () => now)
  const p = createPolicies(states, lcg(1))['p2c-ewma']
  const eps = [ep(1), ep(2), ep(3)]
  const counts = new Map<string, number>()
  for (let i = 0; i < 3000; i++) {
    const e = p.pick('svc', eps, new Set())
    counts.set(e.key, (counts.get(e.key) ?? 0) + 1)
    now += 1
    states.get(e).observe(e.key === 'e3' ? 101 : 1, now)
  }
  const slow = (counts.get('e3') ?? 0) / 3000
  t.ok(slow < 0.1, `slow endpoint got ${(slow * 100).toFixed(1)} % of requests`)
})

t.test('an endpoint not picked for a while has its old peak forgotten and is tried again', async (t) => {
  let now = 1_000
  const states = new EndpointStates(Math.random, () => now)
  const p = createPolicies(states, lcg(3))['p2c-ewma']
  const eps = [ep(1), ep(2)]
  states.get(eps[0]).observe(500, now)
  states.get(eps[1]).observe(5, now)
  t.equal(p.pick('svc', eps, new Set()).key, 'e2', 'the slow peak loses at first')
  now += 60_000
  states.get(eps[1]).observe(5, now)
  t.equal(p.pick('svc', eps, new Set()).key, 'e1', 'a minute later the unobserved peak has decayed below the busy one')
})

t.test('least-request prefers the endpoint with fewer requests in flight', async (t) => {
  const states = new EndpointStates()
  const p = createPolicies(states, lcg(2))['least-request']
  const eps = [ep(1), ep(2)]
  states.get(eps[0]).inflight = 10
  let second = 0
  for (let i = 0; i < 100; i++) if (p.pick('svc', eps, new Set()).key === 'e2') second++
  t.equal(second, 100)
})

t.test('round-robin honours weights and skips endpoints already tried', async (t) => {
  const p = createPolicies(new EndpointStates())['round-robin']
  const eps = [ep(1, 1), ep(2, 3)]
  const seq = Array.from({ length: 8 }, () => p.pick('svc', eps, new Set()).key)
  t.equal(seq.filter((k) => k === 'e2').length, 6, 'weight 3 gets three of every four')
  for (let i = 0; i < 5; i++) t.equal(p.pick('svc', eps, new Set(['e2'])).key, 'e1', 'a retry avoids the tried endpoint')
  t.equal(p.pick('svc', [ep(1)], new Set(['e1'])).key, 'e1', 'when all were tried, any will do')
})
