// Whether a caller's body that emitted 'end' arrived whole: node ends an h2 stream the caller reset
// too, as if its body were complete; only a clean end may end the next hop's body.
import { constants as h2c } from 'node:http2'

export function endedWhole (body: object): boolean {
  const rst = (body as { rstCode?: number }).rstCode
  return rst === undefined || rst === h2c.NGHTTP2_NO_ERROR
}
