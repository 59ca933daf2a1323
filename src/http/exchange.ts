// One request as the proxy sees it, whatever protocol it arrived in; both directions route these.
import type { IncomingMessage } from 'node:http'
import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2'
import type { Readable } from 'node:stream'
import { forwardable, isGrpc, withoutUnderscores, type Headers } from './headers.ts'
import type { AccessRecord, Direction } from '../telemetry/access-log.ts'
import type { ResponseSink } from './response-sink.ts'

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
  /** Inbound: did the caller come over mutual TLS, and as whom (its verified SPIFFE ID)? */
  readonly mtls?: boolean
  readonly peerIdentity?: string
}

/**
 * An HTTP/1.1 request on either listener; mesh headers and names with underscores from the caller
 * are dropped. `peerIdentity`: it came from a peer sidecar over mTLS, as whom.
 */
export function fromHttp1 (req: IncomingMessage, authority: string, path: string, record: AccessRecord, upgrade: string | undefined, peerIdentity?: string): Exchange {
  return {
    method: req.method ?? 'GET',
    path,
    authority,
    origProto: 'HTTP/1.1',
    headers: withoutUnderscores(forwardable(req.headers, true)),
    body: upgrade === undefined && hasBody(req) ? req : null,
    upgrade,
    grpc: isGrpc(req.headers),
    record,
    peerAddress: req.socket.remoteAddress,
    mtls: peerIdentity !== undefined,
    peerIdentity,
  }
}

/** An h2 stream on either listener; `headers` are the ones to forward (already cleaned; names with underscores are dropped here). */
export function fromHttp2 (stream: ServerHttp2Stream, raw: IncomingHttpHeaders, headers: Headers, authority: string, origProto: OrigProto, record: AccessRecord, upgrade?: string, peerIdentity?: string): Exchange {
  return {
    method: raw[':method'] ?? 'GET',
    path: raw[':path'] ?? '/',
    authority,
    origProto,
    headers: withoutUnderscores(headers),
    body: stream.endAfterHeaders ? null : stream,
    upgrade,
    grpc: isGrpc(raw),
    record,
    peerAddress: stream.session?.socket?.remoteAddress,
    mtls: peerIdentity !== undefined,
    peerIdentity,
  }
}

export function hasBody (req: IncomingMessage): boolean {
  const length = req.headers['content-length']
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')
}

/** Where each request's access record starts, and whether the sidecar is draining (both directions use it). */
export interface RequestLog {
  /** While draining, HTTP/1.1 responses close their connection so clients move elsewhere. */
  readonly draining: boolean
  /** Starts the access record of one request; it ends (log line, metrics) when the caller's stream closes. */
  begin (direction: Direction, method: string, authority: string, path: string, proto: string, sink: ResponseSink): AccessRecord
}
