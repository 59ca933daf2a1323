// HTTP/1.1 between sidecars (Istio's default; DESIGN.md "The request path"): a pool of keep-alive
// connections per peer, mTLS with ALPN remora-http/1.1 when the mesh has identities, each pool
// checking the SPIFFE ID its endpoints must present. Requests from HTTP/1.1 apps travel this way;
// HTTP/2, gRPC, upgrades and requests with announced trailers keep the multiplexed h2 connection.
import type { Logger } from 'pino'
import type { Readable } from 'node:stream'
import type { HostPort } from '../mesh/host-port.ts'
import { peerConnector, type PeerTls } from '../transport/peer-http1.ts'
import type { Exchange } from './exchange.ts'
import type { Headers } from './headers.ts'
import { Http1Origins, type Http1Hooks } from './origin-http1.ts'
import type { Attempt } from './relay-h2.ts'
import type { ResponseSink } from './response-sink.ts'
import { PEER_REASONS } from './upstream-errors.ts'

/**
 * How long a pooled connection to a peer stays open unused. The peer's inbound keeps idle HTTP/1.1
 * connections 65 s (REMORA_HTTP1_IDLE_TIMEOUT), so this side closes first and a request never meets
 * a connection the peer is closing; a burst's extra connections do not linger for a minute.
 */
export const PEER_IDLE_MS = 4_000

export class PeerHttp1 {
  /** One set of pools per identity the peers must prove (and connect timeout): few, one per called workload. */
  readonly #origins = new Map<string, Http1Origins>()
  readonly #log: Logger
  readonly #connectTimeout: number
  readonly #tls: PeerTls | undefined

  /** Without `tls`, plaintext (a mesh without identities). */
  constructor (log: Logger, connectTimeout: number, tls?: PeerTls) {
    this.#log = log
    this.#connectTimeout = connectTimeout
    this.#tls = tls
  }

  /** Sends one attempt to the peer at `target` (its inbound port), which must be `identity`. */
  relay (target: HostPort, identity: string | undefined, connectTimeout: number | undefined, ex: Exchange, headers: Headers, body: Readable | null, sink: ResponseSink, hooks: Http1Hooks): Attempt {
    const timeout = connectTimeout ?? this.#connectTimeout
    const key = `${identity ?? ''}|${timeout}`
    let origins = this.#origins.get(key)
    if (origins === undefined) {
      const tls = this.#tls
      origins = new Http1Origins(timeout, this.#log, tls === undefined ? undefined : peerConnector(tls, identity, timeout), PEER_IDLE_MS)
      this.#origins.set(key, origins)
    }
    const host = target.host.includes(':') ? `[${target.host}]` : target.host
    return origins.relay(`http://${host}:${target.port}`, ex, headers, body, sink, PEER_REASONS, hooks)
  }

  async close (): Promise<void> { await Promise.all([...this.#origins.values()].map((o) => o.close())) }
  destroy (): void { for (const o of this.#origins.values()) o.destroy() }
}
