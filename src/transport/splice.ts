// Two byte streams joined both ways (a tunnel, an upgraded connection): either side ending or
// failing ends the other.
import type { Duplex } from 'node:stream'

/** Two byte streams joined both ways; either side ending or failing ends the other. */
export function splice (a: Duplex, b: Duplex): void {
  a.pipe(b)
  b.pipe(a)
  const destroyBoth = (): void => { a.destroy(); b.destroy() }
  a.once('error', destroyBoth)
  b.once('error', destroyBoth)
  a.once('close', () => b.destroy())
  b.once('close', () => a.destroy())
}
