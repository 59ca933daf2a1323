// Raw HTTP/2 for tests that must send what no well-behaved client would: the preface, frames by hand, literal HPACK.
export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')
/** One frame: 24-bit length, type, flags, stream id (reserved bit included, for hostile cases), payload (RFC 9113 §4.1). */
export function frame (type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9)
  head.writeUIntBE(payload.length, 0, 3)
  head[3] = type
  head[4] = flags
  head.writeUInt32BE(stream >>> 0, 5)
  return Buffer.concat([head, payload])
}
/** HPACK integer with an N-bit prefix. */
function hpackInt (value: number, prefixBits: number, first: number): number[] {
  const max = (1 << prefixBits) - 1
  if (value < max) return [first | value]
  const out = [first | max]
  let v = value - max
  while (v >= 128) { out.push((v & 0x7f) | 0x80); v = Math.floor(v / 128) }
  out.push(v)
  return out
}
/** HPACK literal header fields without indexing, new names, no Huffman. */
export function hpack (headers: Array<[string, string]>): Buffer {
  return Buffer.concat(headers.map(([n, v]) => {
    const name = Buffer.from(n, 'latin1')
    const value = Buffer.from(v, 'latin1')
    return Buffer.concat([Buffer.from([0]), Buffer.from(hpackInt(name.length, 7, 0)), name, Buffer.from(hpackInt(value.length, 7, 0)), value])
  }))
}
