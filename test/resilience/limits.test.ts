// Retry budget, backoff, deadlines, concurrency limit and token bucket: the arithmetic users rely on.
import t from 'tap'
import { RetryBudget } from '../../src/resilience/retry-budget.ts'
import { backoffMs } from '../../src/resilience/backoff.ts'
import { formatGrpcTimeout, parseGrpcTimeout } from '../../src/resilience/deadline.ts'
import { ConcurrencyLimit } from '../../src/resilience/concurrency-limit.ts'
import { TokenBucket } from '../../src/resilience/rate-limit.ts'
import { retriableResponse } from '../../src/resilience/policy.ts'

t.test('retry budget: 20 % of requests plus 10/s over a 10 s window', async (t) => {
  const b = new RetryBudget({ ratio: 0.2, minPerSecond: 0 })
  for (let i = 0; i < 100; i++) b.request(1000)
  let granted = 0
  for (let i = 0; i < 50; i++) if (b.tryRetry(1000)) granted++
  t.equal(granted, 20)
  t.notOk(b.tryRetry(5000))
  for (let i = 0; i < 10; i++) b.request(12_000)
  t.ok(b.tryRetry(12_000), 'old requests and retries leave the window')
  const floor = new RetryBudget({ ratio: 0, minPerSecond: 10 })
  let n = 0
  while (floor.tryRetry(0)) n++
  t.equal(n, 100, 'the per-second floor allows retries at low traffic')
})

t.test('backoff grows exponentially under a cap, with full jitter', async (t) => {
  t.equal(backoffMs(1, 25, 250, () => 0.999), 25)
  t.equal(backoffMs(3, 25, 250, () => 0.999), 100)
  t.equal(backoffMs(10, 25, 250, () => 0.999), 250)
  t.equal(backoffMs(3, 25, 250, () => 0), 0)
})

t.test('grpc-timeout', async (t) => {
  t.equal(parseGrpcTimeout('100m'), 100)
  t.equal(parseGrpcTimeout('2S'), 2000)
  t.equal(parseGrpcTimeout('1H'), 3_600_000)
  t.equal(parseGrpcTimeout('500u'), 0.5)
  t.equal(parseGrpcTimeout('123456789m'), undefined, 'at most 8 digits')
  t.equal(parseGrpcTimeout('1x'), undefined)
  t.equal(formatGrpcTimeout(99.2), '100m')
  t.equal(formatGrpcTimeout(0), '1m')
  t.equal(formatGrpcTimeout(2e8), '200000S')
})

t.test('concurrency limit with a bounded queue sheds the excess', async (t) => {
  const limit = new ConcurrencyLimit({ maxConcurrent: 2, maxQueued: 1 })
  const releases: Array<() => void> = []
  const started: number[] = []
  for (let i = 0; i < 3; i++) t.not(limit.acquire((r) => { started.push(i); releases.push(r) }), false)
  t.equal(limit.acquire(() => {}), false, 'the fourth is refused')
  t.same(started, [0, 1])
  releases[0]()
  releases[0]()
  t.same(started, [0, 1, 2], 'a freed slot starts the queued one (released twice counts once)')
  t.equal(limit.active, 2)
  const cancel = limit.acquire(() => t.fail('cancelled while queued'))
  t.type(cancel, 'function')
  if (cancel !== false) cancel()
  releases[1]()
  t.equal(limit.active, 1)
})

t.test('concurrency limit is fair between sources: a full queue makes room for another caller, a freed slot goes to the caller holding fewest', async (t) => {
  const limit = new ConcurrencyLimit({ maxConcurrent: 2, maxQueued: 2 })
  const started: string[] = []
  const releases = new Map<string, () => void>()
  const evicted: string[] = []
  const take = (source: string, name: string): false | (() => void) => limit.acquire((r) => { started.push(name); releases.set(name, r) }, source, () => evicted.push(name))
  // One caller takes every slot and every queue place (the slow-body attack).
  for (const n of ['a1', 'a2', 'a3', 'a4']) t.not(take('A', n), false, `${n} admitted or queued`)
  t.same(started, ['a1', 'a2'])
  t.equal(take('A', 'a5'), false, 'the same caller gets no more: the queue is full')
  // Another caller is not shed: the hog's newest waiter is.
  t.not(take('B', 'b1'), false, 'another caller gets a queue place')
  t.same(evicted, ['a4'], "the hog's newest waiter was shed to make room")
  releases.get('a1')?.()
  t.same(started, ['a1', 'a2', 'b1'], 'the freed slot goes to the caller holding none, ahead of the older waiter of the hog')
  releases.get('a2')?.()
  t.same(started, ['a1', 'a2', 'b1', 'a3'], 'then the hog again: no slot is kept idle')
  t.equal(limit.queued, 0)
  // Equals: two callers holding none wait; the one waiting longer goes first.
  const fifo = new ConcurrencyLimit({ maxConcurrent: 1, maxQueued: 4 })
  const order: string[] = []
  const rel: Array<() => void> = []
  fifo.acquire((r) => { order.push('x'); rel.push(r) }, 'X')
  fifo.acquire((r) => { order.push('c'); rel.push(r) }, 'C')
  fifo.acquire((r) => { order.push('d'); rel.push(r) }, 'D')
  rel[0]()
  t.same(order, ['x', 'c'], 'between callers holding as many, the longest waiting starts')
  // A full queue of one waiter each: a newcomer with none is refused rather than shedding an equal.
  const even = new ConcurrencyLimit({ maxConcurrent: 1, maxQueued: 2 })
  even.acquire(() => {}, 'X')
  even.acquire(() => {}, 'C', () => t.fail('an equal is never shed'))
  even.acquire(() => {}, 'D', () => t.fail('an equal is never shed'))
  t.equal(even.acquire(() => {}, 'E'), false, 'no caller has more waiting than another: the newcomer is refused')
})

t.test('token bucket', async (t) => {
  const b = new TokenBucket({ requestsPerSecond: 10, burst: 2 }, 0)
  t.ok(b.take(0))
  t.ok(b.take(0))
  t.notOk(b.take(0))
  t.ok(b.take(100), 'refills at the rate')
})

t.test('what is retried on a response', async (t) => {
  t.ok(retriableResponse(['5xx'], 'GET', false, 503, undefined))
  t.notOk(retriableResponse(['5xx'], 'POST', false, 503, undefined), 'never a non-idempotent method on a status')
  t.notOk(retriableResponse(['gateway-error'], 'GET', false, 500, undefined))
  t.ok(retriableResponse(['unavailable'], 'POST', true, 200, 14), 'gRPC on a chosen status code')
  t.notOk(retriableResponse(['unavailable'], 'POST', true, 200, 13))
  t.notOk(retriableResponse([], 'GET', false, 503, undefined), 'off unless configured')
})
