// Waits for a new upstream connection to come up or fail, on behalf of an accepted connection that may go away meanwhile.
import type { Duplex } from 'node:stream'

/**
 * `up` once `upstream` emits `event` (connect, or TLS's secureConnect), with its connect timeout
 * cleared; else `failed` once, with why (`connect timeout`, `connect refused`, the error code). The
 * accepted connection closing first destroys `upstream` and calls neither.
 */
export function whenUp (accepted: Duplex, upstream: Duplex & { setTimeout (ms: number): unknown }, event: 'connect' | 'secureConnect', up: () => void, failed: (why: string) => void): void {
  let settled = false
  const gone = (): void => { if (!settled) { settled = true; upstream.destroy() } }
  accepted.once('close', gone)
  const fail = (why: string): void => {
    if (settled) return
    settled = true
    accepted.off('close', gone)
    upstream.destroy()
    failed(why)
  }
  upstream.once('timeout', () => fail('connect timeout'))
  upstream.once('error', (err: NodeJS.ErrnoException) => fail(err.code === 'ECONNREFUSED' ? 'connect refused' : err.code ?? err.message))
  upstream.once(event, () => {
    if (settled) return
    settled = true
    accepted.off('close', gone)
    upstream.setTimeout(0)
    upstream.removeAllListeners('timeout')
    up()
  })
}
