// Where a redirected connection was going: SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST, read through koffi (FFI, prebuilt).
import { createRequire } from 'node:module'
import { endianness } from 'node:os'
import type { Socket } from 'node:net'
import type { HostPort } from '../mesh/host-port.ts'

const SOL_IP = 0
const SOL_IPV6 = 41
/** SO_ORIGINAL_DST (linux/netfilter_ipv4.h) and IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h) are both 80. */
const SO_ORIGINAL_DST = 80
const AF_INET = 2
const AF_INET6 = 10
/** sizeof(struct sockaddr_in6); a sockaddr_in fits too. */
const SOCKADDR_LEN = 28

type GetSockOpt = (fd: number, level: number, name: number, out: Buffer, len: number[]) => number

export type OriginalDstLookup =
  | { readonly available: true, readonly lookup: (socket: Socket) => HostPort | undefined }
  | { readonly available: false, readonly why: string }

let loaded: OriginalDstLookup | undefined

/**
 * Loads the lookup once. Unavailable (not Linux, koffi missing, libc not found) is an answer with
 * the reason, not an error: the proxy says so once and routes HTTP by Host / :authority.
 */
export function originalDstLookup (): OriginalDstLookup {
  loaded ??= load()
  return loaded
}

function load (): OriginalDstLookup {
  if (process.platform !== 'linux') return { available: false, why: `SO_ORIGINAL_DST exists only on Linux (this is ${process.platform})` }
  let getsockopt: GetSockOpt
  try {
    // koffi is a CommonJS package with a native part; require keeps this module's import static-free.
    const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi')
    const libc = koffi.load('libc.so.6')
    getsockopt = libc.func('int getsockopt(int, int, int, _Out_ uint8_t *optval, _Inout_ uint32_t *optlen)') as GetSockOpt
  } catch (err) {
    return { available: false, why: `cannot load the FFI for getsockopt (koffi): ${(err as Error).message}` }
  }
  const buf = Buffer.alloc(SOCKADDR_LEN)
  const len = [SOCKADDR_LEN]
  return {
    available: true,
    lookup (socket: Socket): HostPort | undefined {
      const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd
      if (fd === undefined || fd < 0) return undefined
      const v6 = socket.remoteFamily === 'IPv6' && !(socket.localAddress ?? '').startsWith('::ffff:')
      len[0] = SOCKADDR_LEN
      if (getsockopt(fd, v6 ? SOL_IPV6 : SOL_IP, SO_ORIGINAL_DST, buf, len) !== 0) return undefined
      return decodeSockaddr(buf)
    },
  }
}

/** struct sockaddr_in / sockaddr_in6 → host:port (the port is in network byte order in both). */
export function decodeSockaddr (buf: Buffer): HostPort | undefined {
  // sa_family is in host byte order; the port and address in network order.
  const family = endianness() === 'LE' ? buf.readUInt16LE(0) : buf.readUInt16BE(0)
  const port = buf.readUInt16BE(2)
  if (family === AF_INET) return { host: `${buf[4]}.${buf[5]}.${buf[6]}.${buf[7]}`, port }
  if (family === AF_INET6) {
    const groups: string[] = []
    for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(8 + i * 2).toString(16))
    return { host: compressV6(groups), port }
  }
  return undefined
}

/** RFC 5952 text: the longest run of zero groups becomes `::`. */
function compressV6 (groups: string[]): string {
  let best = -1
  let bestLen = 0
  for (let i = 0; i < 8;) {
    if (groups[i] !== '0') { i++; continue }
    let j = i
    while (j < 8 && groups[j] === '0') j++
    if (j - i > bestLen && j - i > 1) { best = i; bestLen = j - i }
    i = j
  }
  if (best < 0) return groups.join(':')
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`
}
