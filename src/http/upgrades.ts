// Which HTTP/1.1 Upgrade requests become tunnels (REMORA_UPGRADES; WebSocket by default). Every
// other request with an Upgrade header goes on as a plain request: node's HTTP/1.1 server parses it
// (body included) and `forwardable` drops Upgrade and HTTP2-Settings, as Envoy does with h2c.
//
// - h2c never: after a 101 the app's HTTP/2 connection would run inside a tunnel through both
//   sidecars, its requests never logged, authorized or counted.
// - An upgrade request with a body neither (RFC 9110 allows one, RFC 6455's GET has none): node
//   hands an upgrade's socket over right after the headers, so the body would be taken for the
//   tunnel's first bytes, never reaching the app as a body, and a client hanging up before the
//   answer left the request and the socket open for ever. As a plain request it ends like any other.
import type { IncomingMessage } from 'node:http'
import { hasBody } from './exchange.ts'

/** True when every protocol the Upgrade value offers (`websocket`, `foo/2`) is in `allowed`. */
export function upgradeAllowed (value: string | undefined, allowed: readonly string[]): boolean {
  if (value === undefined) return false
  const offered = value.split(',').map((p) => p.trim().toLowerCase()).filter((p) => p !== '')
  return offered.length > 0 && offered.every((p) => {
    const name = p.split('/')[0]
    return name !== 'h2c' && (allowed.includes(p) || allowed.includes(name))
  })
}

/** For node's `shouldUpgradeCallback`: an upgrade the proxy carries, else a plain request. */
export function acceptsUpgrade (req: IncomingMessage, allowed: readonly string[]): boolean {
  return upgradeAllowed(req.headers.upgrade, allowed) && !hasBody(req)
}
