// The server name (SNI) in a TLS ClientHello, read from the first bytes of a connection the app opened.

/** The SNI host name, or undefined when the bytes hold no complete ClientHello with one. */
export function sniOf (head: Buffer): string | undefined {
  try {
    if (head.length < 5 || head[0] !== 0x16) return undefined
    const recordEnd = Math.min(head.length, 5 + head.readUInt16BE(3))
    let i = 5
    if (head[i] !== 0x01) return undefined // not a ClientHello
    i += 4 // handshake type + 24-bit length
    i += 2 + 32 // client_version, random
    i += 1 + head[i] // session_id
    i += 2 + head.readUInt16BE(i) // cipher_suites
    i += 1 + head[i] // compression_methods
    const extEnd = Math.min(recordEnd, i + 2 + head.readUInt16BE(i))
    i += 2
    while (i + 4 <= extEnd) {
      const type = head.readUInt16BE(i)
      const len = head.readUInt16BE(i + 2)
      i += 4
      if (type === 0x0000 && i + 5 <= extEnd) {
        // server_name_list: length(2), then name_type(1) = host_name(0), length(2), name
        if (head[i + 2] !== 0) return undefined
        const n = head.readUInt16BE(i + 3)
        if (i + 5 + n > extEnd) return undefined
        return head.subarray(i + 5, i + 5 + n).toString('ascii')
      }
      i += len
    }
  } catch { /* a truncated hello: no name */ }
  return undefined
}
