// The app's own health probes, run for kubelet: the injector rewrote each httpGet / tcpSocket probe to
// GET /app-health/<container>/<kind> on the admin port (strict mTLS on the inbound port refuses kubelet's
// plaintext), and the admin server asks here. Judged as kubelet judges: an HTTP(S) GET answered 200-399
// (redirects not followed), or a TCP connection that opens; anything else, or no answer in time, fails.
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import { appProbeOf, type AppProbe, type AppProbes, type HttpAppProbe, type TcpAppProbe } from '../parse/app-probes.ts'

/**
 * How long one probe may take. kubelet's `timeoutSeconds` is not in REMORA_APP_PROBES and kubelet sends no
 * header with it, so this is a fixed bound: kubelet gives up on its own timeout anyway, this only ends the
 * probe of an app that hangs.
 */
export const APP_PROBE_TIMEOUT_MS = 10_000

/** kubelet reads at most this much of a probe's body (and judges by the status alone). */
const MAX_BODY_BYTES = 10 * 1024

/** Headers the prober sets itself (framing, one connection per probe), as Go's client ignores them in a probe. */
const OWN_HEADERS = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'upgrade', 'te', 'trailer'])

export interface AppProbeResult {
  readonly healthy: boolean
  /** One short line for kubelet's event: the status or the failure, never the app's body. */
  readonly why: string
}

export interface AppProberOptions {
  /** Default APP_PROBE_TIMEOUT_MS. */
  readonly timeoutMs?: number
  /** Where the app listens; default 127.0.0.1, as every other connection of the sidecar to its app. */
  readonly host?: string
}

/**
 * Runs the declared probes by name. Requests for one probe while it is already running share its result,
 * so however often /app-health is asked, the app sees at most one probe of each kind in flight.
 */
export class AppProber {
  readonly #probes: AppProbes
  readonly #timeoutMs: number
  readonly #host: string
  readonly #running = new Map<string, Promise<AppProbeResult>>()

  constructor (probes: AppProbes, options: AppProberOptions = {}) {
    this.#probes = probes
    this.#timeoutMs = options.timeoutMs ?? APP_PROBE_TIMEOUT_MS
    this.#host = options.host ?? '127.0.0.1'
  }

  /** The probe's result; undefined when the pod declared no probe of that name (`<container>/<kind>`). */
  run (name: string, userAgent?: string): Promise<AppProbeResult> | undefined {
    const probe = appProbeOf(this.#probes, name)
    if (probe === undefined) return undefined
    let running = this.#running.get(name)
    if (running === undefined) {
      running = probeApp(probe, { host: this.#host, timeoutMs: this.#timeoutMs, userAgent })
      this.#running.set(name, running)
      void running.finally(() => this.#running.delete(name))
    }
    return running
  }
}

export interface ProbeOptions {
  readonly host: string
  readonly timeoutMs: number
  /** kubelet's own (kube-probe/<version>), passed on as kubelet would have sent it; a declared User-Agent wins. */
  readonly userAgent?: string
}

/** One probe of the app; never rejects. */
export function probeApp (probe: AppProbe, options: ProbeOptions): Promise<AppProbeResult> {
  return probe.type === 'tcp' ? probeTcp(probe, options) : probeHttp(probe, options)
}

function probeTcp (probe: TcpAppProbe, { host, timeoutMs }: ProbeOptions): Promise<AppProbeResult> {
  const target = `${host}:${probe.port}`
  return new Promise((resolve) => {
    const socket = net.connect({ host, port: probe.port })
    const timer = setTimeout(() => {
      socket.destroy()
      resolve({ healthy: false, why: `tcp ${target}: no connection within ${timeoutMs} ms` })
    }, timeoutMs)
    socket.once('connect', () => {
      clearTimeout(timer)
      socket.destroy()
      resolve({ healthy: true, why: `tcp ${target}: connected` })
    })
    socket.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      resolve({ healthy: false, why: `tcp ${target}: ${err.code ?? err.message}` })
    })
  })
}

function probeHttp (probe: HttpAppProbe, { host, timeoutMs, userAgent }: ProbeOptions): Promise<AppProbeResult> {
  const target = `${probe.scheme === 'HTTPS' ? 'https' : 'http'}://${host}:${probe.port}${probe.path}`
  const headers: Record<string, string | string[]> = {}
  for (const h of probe.headers) {
    const name = h.name.toLowerCase()
    if (OWN_HEADERS.has(name)) continue
    const had = headers[name]
    // Host takes one value (kubelet uses the first); any other header may repeat.
    if (had === undefined) headers[name] = h.value
    else if (name !== 'host') headers[name] = [...(Array.isArray(had) ? had : [had]), h.value]
  }
  headers['user-agent'] ??= userAgent ?? 'remora-app-probe'
  headers.accept ??= '*/*'
  headers.connection = 'close'
  return new Promise((resolve) => {
    let settled = false
    const settle = (result: AppProbeResult): void => {
      if (settled) return
      settled = true
      resolve(result)
    }
    const options: https.RequestOptions = { host, port: probe.port, path: probe.path, method: 'GET', headers, agent: false }
    // kubelet does not verify the app's certificate either.
    const req = probe.scheme === 'HTTPS'
      ? https.request({ ...options, rejectUnauthorized: false })
      : http.request(options)
    // Bounds the whole probe, the rest of the body included (read, up to kubelet's limit, then dropped).
    const timer = setTimeout(() => {
      settle({ healthy: false, why: `GET ${target}: no answer within ${timeoutMs} ms` })
      req.destroy()
    }, timeoutMs)
    req.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      settle({ healthy: false, why: `GET ${target}: ${err.code ?? err.message}` })
    })
    req.once('response', (res: http.IncomingMessage) => {
      const status = res.statusCode ?? 0
      // 3xx counts as success, as kubelet's range does; a redirect is not followed.
      const healthy = status >= 200 && status < 400
      settle({ healthy, why: `GET ${target}: HTTP ${status}` })
      let read = 0
      res.on('data', (chunk: Buffer) => {
        read += chunk.length
        if (read > MAX_BODY_BYTES) req.destroy()
      })
      res.once('close', () => clearTimeout(timer))
      res.on('error', () => { /* the body is not judged */ })
    })
    req.end()
  })
}
