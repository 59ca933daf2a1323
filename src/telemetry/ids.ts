// Trace and span ids for the SDK's tracer and remora's: crypto-random, hex-encoded in bulk.
// The SDK's generator draws Math.random() and hex-encodes each id on its own; per span that was a
// few microseconds inside a loaded sidecar. Here one randomBytes call and one hex encoding serve
// 1,024 trace ids or 2,048 span ids, and each id is a slice of that string. A call costs ~11 µs
// however small (randomBytes(2048) and its hex took 14.5 µs, 16 KiB 36 µs), hence the size.
import { randomBytes } from 'node:crypto'
import type { IdGenerator } from '@opentelemetry/sdk-trace'

/** Random bytes drawn at a time; the pool's hex string (32 K characters) lives while any id from it does. */
export const POOL_BYTES = 16384
const ZERO_TRACE_ID = '0'.repeat(32)
const ZERO_SPAN_ID = '0'.repeat(16)

export class PooledIdGenerator implements IdGenerator {
  readonly #random: (bytes: number) => Buffer
  #hex = ''
  #at = 0

  /** `random` is for tests; crypto's randomBytes otherwise. */
  constructor (random: (bytes: number) => Buffer = randomBytes) { this.#random = random }

  #take (chars: number): string {
    if (this.#at + chars > this.#hex.length) {
      this.#hex = this.#random(POOL_BYTES).toString('hex')
      this.#at = 0
    }
    const id = this.#hex.slice(this.#at, this.#at + chars)
    this.#at += chars
    return id
  }

  /** 16 random bytes as 32 lower-case hex digits, never all zero (an invalid id). */
  generateTraceId (): string {
    let id = this.#take(32)
    while (id === ZERO_TRACE_ID) id = this.#take(32)
    return id
  }

  /** 8 random bytes as 16 lower-case hex digits, never all zero. */
  generateSpanId (): string {
    let id = this.#take(16)
    while (id === ZERO_SPAN_ID) id = this.#take(16)
    return id
  }
}
