// Connections that carry HTTP/1.1 between sidecars over mTLS (ALPN remora-http/1.1), made for
// undici's connection pools: TLS 1.3 with this sidecar's current certificate, and the peer must
// prove the SPIFFE ID the endpoint table names for it.
import tls, { type SecureContext } from 'node:tls'
import type { Socket } from 'node:net'
import { ConnectTimeoutError } from '../errors.ts'
import { peerIdentityCheck } from './h2-sessions.ts'
import { tlsReason, type TlsReason } from './tls-errors.ts'

/** The ALPN a peer sidecar's inbound port answers with its HTTP/1.1 server (Istio's is istio-http/1.1). */
export const PEER_H1_ALPN = 'remora-http/1.1'

/** What undici's pools call to open a connection (its `connect` option as a function). */
export type Connector = (opts: { hostname: string, port: string }, callback: (...args: [null, Socket] | [Error, null]) => void) => void

export interface PeerTls {
  /** This sidecar's current certificate and trust anchors (renewed ones for new connections). */
  readonly context: () => SecureContext | undefined
  readonly onTlsFailure: (reason: TlsReason) => void
}

/** Opens mTLS connections to peers that must present `identity`, within `timeoutMs`. */
export function peerConnector (peerTls: PeerTls, identity: string | undefined, timeoutMs: number): Connector {
  return ({ hostname, port }, callback) => {
    const host = hostname.startsWith('[') ? hostname.slice(1, -1) : hostname
    let settled = false
    const socket = tls.connect({
      host,
      port: Number(port),
      secureContext: peerTls.context(),
      minVersion: 'TLSv1.3',
      ALPNProtocols: [PEER_H1_ALPN],
      servername: '',
      checkServerIdentity: peerIdentityCheck(identity),
    } as tls.ConnectionOptions)
    socket.setNoDelay(true)
    const done = (err: Error | null): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.removeListener('error', done)
      if (err === null) { callback(null, socket); return }
      const reason = tlsReason(err as NodeJS.ErrnoException)
      if (reason !== undefined) peerTls.onTlsFailure(reason)
      socket.destroy()
      callback(err, null)
    }
    const timer = setTimeout(() => done(new ConnectTimeoutError(`${host}:${port}`, timeoutMs)), timeoutMs)
    socket.once('secureConnect', () => {
      // A peer that does not speak it (another mesh, an older sidecar) picks no protocol.
      done(socket.alpnProtocol === PEER_H1_ALPN ? null : Object.assign(new Error(`${host}:${port} did not accept ALPN ${PEER_H1_ALPN}`), { code: 'ERR_SSL_NO_APPLICATION_PROTOCOL' }))
    })
    socket.once('error', done)
  }
}
