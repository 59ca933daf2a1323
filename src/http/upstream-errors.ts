// Why an upstream failed, in the catalog's words: the same failure reads as the peer sidecar's
// (`connect refused`, `upstream reset`) on the outbound side and as the app's (`app unavailable`,
// `app reset`) on the inbound side; TLS failures and timeouts read the same on both.
import { ProxyErrors, type ProxyErrorReason } from '../errors.ts'
import { tlsReason } from '../transport/tls-errors.ts'

export interface RelayReasons {
  /** Connection refused by the destination (peer sidecar, or the local app). */
  readonly refused: ProxyErrorReason
  /** Stream reset or connection lost before a response. */
  readonly reset: ProxyErrorReason
  /** An app may not forge mesh headers (`remora-proxy-error`, …) in its responses; a peer sidecar may. */
  readonly trustMeshHeaders: boolean
}

export const PEER_REASONS: RelayReasons = { refused: ProxyErrors.connectRefused, reset: ProxyErrors.upstreamReset, trustMeshHeaders: true }
export const APP_REASONS: RelayReasons = { refused: ProxyErrors.appUnavailable, reset: ProxyErrors.appReset, trustMeshHeaders: false }

/** The connection was never made (refused, timed out, the TLS handshake failed): the request surely never reached the destination. */
export function neverConnected (err: NodeJS.ErrnoException | undefined): boolean {
  return err?.code === 'ECONNREFUSED' || err?.code === 'ETIMEDOUT' || err?.code === 'UND_ERR_CONNECT_TIMEOUT' || tlsReason(err) !== undefined
}

export function classify (err: NodeJS.ErrnoException | undefined, reasons: RelayReasons): ProxyErrorReason {
  const tls = tlsReason(err)
  if (tls === 'identity-mismatch') return ProxyErrors.peerIdentityMismatch
  if (tls !== undefined) return ProxyErrors.peerTlsFailed
  switch (err?.code) {
    // Never connected: refused, or no such host (an egress name DNS does not know), or no route to it.
    case 'ECONNREFUSED': case 'ENOTFOUND': case 'EAI_AGAIN': case 'EHOSTUNREACH': case 'ENETUNREACH': return reasons.refused
    case 'ETIMEDOUT': case 'UND_ERR_CONNECT_TIMEOUT': return ProxyErrors.connectTimeout
    default: return reasons.reset
  }
}
