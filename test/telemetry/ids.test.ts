// Trace and span ids: the right length, lower-case hex, never the invalid all-zero id, not repeated,
// including across the refills of the random pool.
import t from 'tap'
import { trace } from '@opentelemetry/api'
import { POOL_BYTES, PooledIdGenerator } from '../../src/telemetry/ids.ts'

t.test('ids are valid, distinct hex across many pool refills', async (t) => {
  const ids = new PooledIdGenerator()
  const seen = new Set<string>()
  let bad = 0
  for (let i = 0; i < 5000; i++) {
    const traceId = ids.generateTraceId()
    const spanId = ids.generateSpanId()
    if (!/^[\da-f]{32}$/.test(traceId) || !/^[\da-f]{16}$/.test(spanId)) bad++
    if (!trace.isSpanContextValid({ traceId, spanId, traceFlags: 1 })) bad++
    seen.add(traceId)
    seen.add(spanId)
  }
  t.equal(bad, 0, 'every id is well-formed and valid')
  t.equal(seen.size, 10_000, 'no id repeats')
})

t.test('an all-zero draw is skipped, and the pool refills when spent', async (t) => {
  // A pool beginning with a zero trace id, then a zero span id (randomBytes could, very rarely).
  let refills = 0
  const ids = new PooledIdGenerator((n) => {
    refills++
    const b = Buffer.alloc(n, 0x03)
    b.fill(0x00, 0, 16).fill(0x01, 16, 32).fill(0x00, 32, 40).fill(0x02, 40, 48)
    return b
  })
  t.equal(ids.generateTraceId(), '01'.repeat(16), 'the zero trace id is passed over')
  t.equal(ids.generateSpanId(), '02'.repeat(8), 'the zero span id is passed over')
  // 48 bytes so far; the rest of the pool is span ids of 8 bytes.
  let wrong = 0
  for (let i = 0; i < (POOL_BYTES - 48) / 8; i++) if (ids.generateSpanId() !== '03'.repeat(8)) wrong++
  t.equal(wrong, 0, 'the rest of the pool, id by id')
  t.equal(refills, 1, `${POOL_BYTES} bytes drawn: one pool so far`)
  t.equal(ids.generateTraceId(), '01'.repeat(16), 'then a fresh pool')
  t.equal(refills, 2)
})
