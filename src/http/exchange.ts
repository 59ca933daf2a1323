// One request as the proxy sees it, whatever protocol it arrived in; both directions route these.
import type { Readable } from 'node:stream'
import type { Headers } from './headers.ts'
import type { AccessRecord } from '../telemetry/access-log.ts'

export type OrigProto = 'HTTP/1.1' | 'HTTP/2'

export interface Exchange {
  readonly method: string
  /** Path and query, as sent (origin-form). */
  readonly path: string
  readonly authority: string
  readonly origProto: OrigProto
  /** Lower-case, no pseudo-headers, no hop-by-hop headers. */
  readonly headers: Headers
  /** null when the request has no body (the next hop gets END_STREAM with the headers). */
  readonly body: Readable | null
  /** The HTTP/1.1 Upgrade header's value, when the caller asked to switch protocols. */
  readonly upgrade?: string
  readonly grpc: boolean
  readonly record: AccessRecord
  /** The caller's address as this sidecar saw it (inbound). */
  readonly peerAddress?: string
}
