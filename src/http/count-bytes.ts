// Counts a body's bytes for the access log without changing how (or when) it flows.
import type { Readable } from 'node:stream'

/**
 * A 'data' listener switches a stream to flowing mode, so bytes would pour out before the real
 * consumer (undici, a pipe set up later) is attached. Count only once the consumer starts reading.
 */
export function countBytes (stream: Readable, add: (n: number) => void): void {
  const listen = (): void => { stream.on('data', (chunk: Buffer) => add(chunk.length)) }
  if (stream.readableFlowing === true) listen()
  else stream.once('resume', listen)
}
