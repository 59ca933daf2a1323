// Opaque bytes both ways between the app's connection and the other side: backpressure (pipe),
// half-close passed on (one side's FIN ends the other's writing only), an idle timeout, byte counts.
import type { Duplex } from 'node:stream'

export interface PipeResult {
  /** Bytes from the side that opened the connection, and back to it. */
  readonly bytesUp: number
  readonly bytesDown: number
  /** Why it ended other than by both sides closing: `idle timeout`, or the first error's message. */
  readonly error: string | undefined
}

/** `moved` is told of every read either way (the sidecar counts opaque bytes as traffic). */
export function pipeTcp (client: Duplex, server: Duplex, idleMs: number, done: (r: PipeResult) => void, moved: () => void = () => {}): void {
  let up = 0
  let down = 0
  let error: string | undefined
  let closed = 0
  let finished = false
  const idle = idleMs > 0 ? setTimeout(() => fail('idle timeout'), idleMs) : undefined
  const touch = (): void => { idle?.refresh(); moved() }
  client.on('data', (c: Buffer) => { up += c.length; touch() })
  server.on('data', (c: Buffer) => { down += c.length; touch() })
  // pipe() ends the destination when the source ends: a half-close travels on, the other way stays open.
  client.pipe(server)
  server.pipe(client)
  function fail (why: string): void {
    error ??= why
    client.destroy()
    server.destroy()
  }
  client.once('error', (e: Error) => fail(e.message))
  server.once('error', (e: Error) => fail(e.message))
  const onClose = (): void => {
    // One side gone for good (not half-closed): nothing more can reach it, so the other goes too.
    if (++closed === 1) { client.destroy(); server.destroy(); return }
    if (finished) return
    finished = true
    clearTimeout(idle)
    done({ bytesUp: up, bytesDown: down, error })
  }
  client.once('close', onClose)
  server.once('close', onClose)
}
