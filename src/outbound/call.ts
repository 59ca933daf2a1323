// One call to a service across attempts (Concrete → Endpoint): the deadline, the choice of
// endpoint, failure accrual, and retries within the budget with backoff — the app sees one answer.
import type { OutgoingHttpHeaders } from 'node:http2'
import type { Readable } from 'node:stream'
import { ProxyErrors, type ProxyErrorReason } from '../errors.ts'
import type { Endpoint, Service } from '../mesh/service.ts'
import type { Exchange } from '../http/exchange.ts'
import { first, MeshHeader } from '../http/headers.ts'
import { PEER_REASONS } from '../http/upstream-errors.ts'
import { relayOverH2, type Attempt } from '../http/relay-h2.ts'
import { dropRest, ReplayBody } from '../http/replay-body.ts'
import type { Http1Hooks } from '../http/origin-http1.ts'
import type { ResponseSink } from '../http/response-sink.ts'
import { refuse } from '../http/refuse.ts'
import { countBytes } from '../http/count-bytes.ts'
import { backoffMs } from '../resilience/backoff.ts'
import { formatGrpcTimeout, parseGrpcTimeout } from '../resilience/deadline.ts'
import { IDEMPOTENT, retriableResponse } from '../resilience/policy.ts'
import type { OutboundContext } from './context.ts'
import type { ServiceState } from './service-state.ts'
import type { Headers } from '../http/headers.ts'
import { endSpan, type RequestSpan } from '../telemetry/spans.ts'
import type { Span } from '../telemetry/tracing.ts'

export class OutboundCall {
  readonly #ctx: OutboundContext
  readonly #ex: Exchange
  readonly #service: Service
  readonly #state: ServiceState
  readonly #sink: ResponseSink
  readonly #tried = new Set<string>()
  #attempt = 0
  #current: Attempt | undefined
  #replay: ReplayBody | undefined
  #deadline: number | undefined
  #deadlineTimer: NodeJS.Timeout | undefined
  #backoffTimer: NodeJS.Timeout | undefined
  #over = false
  /** The request's span (route.ts), parent of every attempt's span; undefined when not traced. */
  readonly #span: RequestSpan | undefined
  /** How long the call waited before the next attempt (its backoff), for that attempt's span. */
  #waitedMs = 0

  constructor (ctx: OutboundContext, ex: Exchange, service: Service, state: ServiceState, sink: ResponseSink, span: RequestSpan | undefined) {
    this.#ctx = ctx
    this.#ex = ex
    this.#service = service
    this.#state = state
    this.#sink = sink
    this.#span = span
  }

  start (): void {
    const { requestTimeoutMs, retry } = this.#state.policy
    const now = Date.now()
    this.#state.budget.request(now)
    const grpcTimeout = this.#ex.grpc ? parseGrpcTimeout(first(this.#ex.headers['grpc-timeout'])) : undefined
    const limits = [requestTimeoutMs > 0 ? requestTimeoutMs : undefined, grpcTimeout].filter((v): v is number => v !== undefined)
    if (limits.length > 0) {
      this.#deadline = now + Math.min(...limits)
      this.#deadlineTimer = setTimeout(() => this.#expire(), this.#deadline - now)
    }
    this.#sink.onClose(() => {
      this.#over = true
      clearTimeout(this.#deadlineTimer)
      clearTimeout(this.#backoffTimer)
    })
    const body = this.#ex.body
    if (body !== null) {
      countBytes(body, (n) => { this.#ex.record.bytesIn += n })
      if (retry.attempts > 1) this.#replay = new ReplayBody(body, retry.maxReplayBytes)
    }
    this.#try()
  }

  #try (): void {
    this.#attempt++
    const now = Date.now()
    const endpoint = this.#pick(now)
    if (endpoint === undefined) {
      this.#answer(ProxyErrors.noEndpoints, this.#service.key)
      return
    }
    this.#tried.add(endpoint.key)
    const state = this.#ctx.endpoints.get(endpoint)
    state.inflight++
    const ex = this.#ex
    ex.record.endpoint = endpoint.key
    ex.record.attempts = this.#attempt
    // HTTP/1.1 apps' requests travel as HTTP/1.1 over the peer's connection pool; everything that
    // needs HTTP/2's framing (h2 and gRPC callers, upgrades, announced request trailers) as an h2 stream.
    const overH1 = ex.origProto === 'HTTP/1.1' && ex.upgrade === undefined && ex.headers.trailer === undefined
    const headers: OutgoingHttpHeaders = overH1
      ? { ...ex.headers, host: ex.authority }
      : { ...ex.headers, ':method': ex.method, ':path': ex.path, ':authority': ex.authority, ':scheme': 'http' }
    headers[MeshHeader.targetPort] = String(endpoint.targetPort)
    headers[MeshHeader.attempt] = String(this.#attempt)
    if (!overH1 && ex.origProto === 'HTTP/1.1') headers[MeshHeader.origProto] = 'HTTP/1.1'
    if (ex.upgrade !== undefined) headers[MeshHeader.upgrade] = ex.upgrade
    if (this.#deadline !== undefined && ex.grpc) headers['grpc-timeout'] = formatGrpcTimeout(this.#deadline - now)
    const request = this.#span
    const span = request?.startAttempt(this.#attempt, { host: endpoint.address.host, port: endpoint.address.port, key: endpoint.key, identity: endpoint.identity }, this.#waitedMs)
    this.#ctx.tracing.inject(span, headers as Headers)
    let outcome: { status: number, grpc?: string, error?: string } = { status: 0 }
    const connectTimeout = this.#state.policy.connectTimeoutMs || undefined
    // The endpoint's latency, not the handshake's: a new connection's setup would stick as its
    // peak EWMA and starve it for seconds (one gRPC channel then favours whoever connected first).
    let started = performance.now()
    let observed = false
    const observe = (failure: boolean, span: Span | undefined): void => {
      if (observed) return
      observed = true
      this.#observe(endpoint, failure, performance.now() - started, span)
    }

    const hooks: Http1Hooks = {
      idleTimeoutMs: this.#state.policy.idleTimeoutMs,
      onDispatched: () => { started = performance.now() },
      onResponse: (status, h) => {
        const grpcStatus = h['grpc-status'] === undefined ? undefined : Number(first(h['grpc-status']))
        const failure = status >= 500 || grpcStatus === 14
        // Set when the peer's sidecar answered itself (shed, denied, its app unreachable).
        const refusedByPeer = first(h[MeshHeader.proxyError])
        outcome = { status, grpc: grpcStatus === undefined ? undefined : String(grpcStatus), error: refusedByPeer }
        observe(failure, span)
        // The peer's sidecar shed the request or could not reach its app: the app never saw it.
        if ((refusedByPeer === ProxyErrors.overloaded.reason || refusedByPeer === ProxyErrors.appUnavailable.reason) && this.#canRetry()) {
          this.#retryLater(endpoint, refusedByPeer, span)
          return false
        }
        if (failure && retriableResponse(this.#state.policy.retry.on, ex.method, ex.grpc, status, grpcStatus) && this.#canRetry()) {
          this.#retryLater(endpoint, grpcStatus !== undefined ? `grpc-status ${grpcStatus}` : `status ${status}`, span)
          return false
        }
        // The caller gets the peer's refusal: this sidecar logs and counts it under the same reason.
        if (refusedByPeer !== undefined) ex.record.error = refusedByPeer
        return true
      },
      onFailure: (reason, _detail, unprocessed) => {
        outcome = { status: 0, error: reason.reason }
        observe(true, span)
        const safe = unprocessed || (this.#state.policy.retry.on.includes('reset') && IDEMPOTENT.has(ex.method) && !ex.grpc)
        if (safe && this.#canRetry()) {
          this.#retryLater(endpoint, reason.reason, span)
          return true
        }
        return false
      },
      onClose: () => {
        state.inflight--
        if (span === undefined) return
        endSpan(span, 'client', outcome.status, outcome.grpc ?? ex.record.grpcStatus, outcome.error ?? (this.#current === attempt ? ex.record.error : undefined))
        request?.attemptEnded()
      },
    }
    let attempt: Attempt
    // undici reads a body from a stream of its own; an h2 attempt gets the copy written straight into its stream.
    if (overH1) {
      const body: Readable | null = this.#replay?.next() ?? ex.body
      attempt = this.#current = this.#ctx.peerH1.relay(endpoint.address, endpoint.identity, connectTimeout, ex, headers as Headers, body, this.#sink, hooks)
    } else {
      const body = this.#replay ?? ex.body
      const session = this.#ctx.peers.get(endpoint.address, connectTimeout, endpoint.identity)
      if (session.connecting) session.once('connect', () => { started = performance.now() })
      attempt = this.#current = relayOverH2(session, headers, ex, body, this.#sink, PEER_REASONS, hooks)
    }
  }

  /** Endpoints in rotation; if failure accrual took out every one, all of them (better than nothing). */
  #pick (now: number): Endpoint | undefined {
    const live = this.#service.endpoints.filter((e) => e.weight > 0)
    if (live.length === 0) return undefined
    const available = this.#ctx.endpoints.available(live, now)
    return this.#ctx.policies[this.#state.policy.balancer].pick(this.#service.key, available.length > 0 ? available : live, this.#tried)
  }

  #canRetry (): boolean {
    if (this.#over || this.#ex.upgrade !== undefined) return false
    if (this.#attempt >= this.#state.policy.retry.attempts) return false
    if (this.#ex.body !== null && this.#replay?.replayable !== true) return false
    if (this.#deadline !== undefined && this.#deadline - Date.now() < 5) return false
    return this.#state.budget.tryRetry()
  }

  #retryLater (endpoint: Endpoint, why: string, span: Span | undefined): void {
    const { retry } = this.#state.policy
    span?.addEvent('retry', { 'remora.retry.reason': why, 'remora.attempt': this.#attempt })
    this.#ex.record.retried.push(`${endpoint.key}: ${why}`)
    this.#ctx.metrics.retries.inc({ authority: this.#service.key, reason: why })
    this.#replay?.hold()
    const delay = backoffMs(this.#attempt, retry.backoffBaseMs, retry.backoffMaxMs)
    this.#waitedMs = delay
    this.#backoffTimer = setTimeout(() => { if (!this.#over) this.#try() }, delay)
  }

  #observe (endpoint: Endpoint, failure: boolean, ms: number, span: Span | undefined): void {
    const change = this.#ctx.endpoints.record(endpoint, this.#service.endpoints, failure ? 'failure' : 'success', ms, Date.now(), this.#state.policy.circuit)
    if (change === undefined) return
    const authority = this.#service.key
    const s = this.#ctx.endpoints.get(endpoint)
    if (change === 'ejected') {
      span?.addEvent('endpoint ejected', { 'remora.endpoint': endpoint.key, 'remora.ejected_for_ms': Math.round(s.ejectedUntil - Date.now()) })
      this.#ctx.metrics.ejections.inc({ authority })
      this.#ctx.log.info({ authority, endpoint: endpoint.key, consecutive_failures: s.consecutiveFailures, ejected_for_ms: Math.round(s.ejectedUntil - Date.now()), ejections: s.ejections }, 'endpoint ejected after consecutive failures')
    } else {
      this.#ctx.log.info({ authority, endpoint: endpoint.key }, 'endpoint restored after a successful probe')
    }
  }

  #expire (): void {
    if (this.#over) return
    clearTimeout(this.#backoffTimer)
    this.#span?.span.addEvent('timeout', { 'remora.attempts': this.#attempt })
    this.#current?.cancel()
    this.#ctx.metrics.timeouts.inc({ direction: 'outbound', authority: this.#service.key })
    const detail = `deadline reached after ${this.#attempt} attempt(s)`
    if (this.#sink.headersSent && this.#ex.grpc) {
      // The response had begun: a gRPC caller still gets a status it can read, in the trailers.
      this.#over = true
      this.#ex.record.error = ProxyErrors.timeout.reason
      dropRest(this.#replay ?? this.#ex.body)
      this.#sink.finish({ 'grpc-status': String(ProxyErrors.timeout.grpcStatus), 'grpc-message': `timeout: ${detail}`, [MeshHeader.proxyError]: ProxyErrors.timeout.reason })
      return
    }
    this.#answer(ProxyErrors.timeout, detail)
  }

  #answer (reason: ProxyErrorReason, detail: string): void {
    this.#over = true
    dropRest(this.#replay ?? this.#ex.body)
    refuse(this.#ex, this.#sink, reason, detail)
  }
}
