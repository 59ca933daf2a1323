// Inbound opaque TCP: from a peer sidecar (mTLS, ALPN remora-tcp/1, then the transport header
// naming the app port), or redirected from a non-meshed client to an app port; checked like HTTP
// (declared port, strict mTLS, authorization by identity), then bytes both ways with the local app.
import net, { type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Destination } from '../transport/destinations.ts'
import type { OpaqueCause } from '../transport/listener.ts'
import { readTcpHeader } from '../transport/tcp-header.ts'
import { pipeTcp } from '../transport/tcp-pipe.ts'
import { whenUp } from '../transport/dial.ts'
import { TcpRecord } from '../telemetry/tcp-record.ts'
import { LogThrottle } from '../telemetry/throttle.ts'
import type { InboundContext } from './context.ts'
import { authorize } from './authorization.ts'

const denials = new LogThrottle()

/** A peer sidecar's opaque stream (mTLS when `identity` is set; else plaintext with the header). */
export function acceptPeerTcp (ctx: InboundContext, socket: Duplex, identity: string | undefined, from: string | undefined): void {
  readTcpHeader(socket, (header) => {
    if (header instanceof Error) {
      ctx.log.debug({ from, err: header.message }, 'inbound opaque connection closed: bad transport header')
      socket.destroy()
      return
    }
    carryInbound(ctx, socket, header.port, identity, identity === undefined ? 'remora-tcp' : 'remora-tcp/mtls', from)
  })
}

/** A connection redirected to an app port that is no HTTP, or the plaintext `remora-tcp` header. */
export function acceptOpaque (ctx: InboundContext, socket: Socket, cause: OpaqueCause, dest: Destination | undefined): void {
  if (cause.kind === 'remora-tcp') { acceptPeerTcp(ctx, socket, undefined, socket.remoteAddress); return }
  if (dest === undefined) { socket.destroy(); return }
  carryInbound(ctx, socket, dest.port, undefined, cause.kind, socket.remoteAddress)
}

function carryInbound (ctx: InboundContext, socket: Duplex, port: number, caller: string | undefined, cause: string, from: string | undefined): void {
  const record = new TcpRecord('inbound', `:${port}`, cause)
  record.metricAuthority = `:${port}`
  record.peer = caller
  record.route = 'app'
  const log = ctx.config.accessLog ? ctx.log : undefined
  const refuse = (why: string): void => {
    record.error = why
    record.end(log, ctx.metrics, 0, 0)
    socket.destroy()
  }
  if (!ctx.config.appPorts.some((p) => p.port === port)) { refuse(`target port not allowed: port ${port} is not one of this workload's app ports`); return }
  if (ctx.config.mtls?.inbound === 'strict' && caller === undefined) {
    ctx.metrics.tlsFailures.inc({ direction: 'inbound', reason: 'plaintext' })
    refuse(`mtls required: port ${port} accepts only mTLS from mesh sidecars`)
    return
  }
  const decision = authorize(ctx.config.authorization, port, caller)
  if (!decision.allowed) {
    ctx.metrics.denied.inc({ port: String(port), rule: decision.rule })
    denials.run(`${caller ?? '-'} ${port} ${decision.rule}`, (suppressed) => ctx.log.warn({ caller: caller ?? 'unauthenticated', from, port, rule: decision.rule, suppressed }, 'inbound connection denied by authorization'))
    refuse(`forbidden: ${caller ?? 'an unauthenticated caller'} may not call port ${port} (${decision.rule})`)
    return
  }
  socket.pause()
  record.endpoint = `127.0.0.1:${port}`
  const app = net.connect({ host: '127.0.0.1', port, noDelay: true, allowHalfOpen: true, timeout: ctx.config.connectTimeout })
  whenUp(socket, app, 'connect', () => {
    record.opened(ctx.metrics)
    pipeTcp(socket, app, ctx.config.tcpIdleTimeout, (r) => {
      if (r.error !== undefined) record.error = r.error
      record.end(log, ctx.metrics, r.bytesUp, r.bytesDown)
    }, ctx.relayed)
    socket.resume()
  }, (why) => refuse(`app unavailable: ${why}`))
}
