// The sidecar's own credentials: a P-256 key made in memory at start, a certificate from the control
// plane's CA for the identity it proves, renewed at 70 % of its lifetime with backoff, swapped in place.
import { EventEmitter } from 'node:events'
import { readFileSync } from 'node:fs'
import http2 from 'node:http2'
import { isIP } from 'node:net'
import tls from 'node:tls'
import type { Logger } from 'pino'
import type { HostPort } from '../mesh/host-port.ts'
import type { MtlsConfig } from '../config/proxy-config.ts'
import { RemoraError } from '../errors.ts'
import { backoffMs } from '../resilience/backoff.ts'
import type { ProxyMetrics } from '../telemetry/metrics.ts'
import { RENEW_AT_FRACTION, certificateInfo, createCsr, generateWorkloadKey, type WorkloadKey } from './keys.ts'
import { CERTIFICATE_PATH, WORKLOAD_HEADER, type CertificateError, type CertificateRequest, type CertificateResponse } from './certificate-api.ts'

/** What a TLS endpoint of this sidecar presents and trusts right now. */
export interface Credentials {
  readonly key: string
  /** Leaf then issuer, PEM. */
  readonly cert: string
  readonly ca: readonly string[]
  readonly identity: string
  readonly notAfter: Date
  /** For clients (outbound, discovery): one context per certificate, shared by every connection. */
  readonly context: tls.SecureContext
}

const RETRY_BASE_MS = 1000
const RETRY_MAX_MS = 60_000

export class WorkloadIdentity extends EventEmitter<{ rotated: [Credentials] }> {
  readonly #config: MtlsConfig
  readonly #control: HostPort
  readonly #workload: string | undefined
  readonly #log: Logger
  readonly #metrics: ProxyMetrics
  readonly #anchors: readonly string[]
  #key: WorkloadKey | undefined
  #current: Credentials | undefined
  #timer: NodeJS.Timeout | undefined
  #stopped = false
  #failures = 0

  constructor (config: MtlsConfig, control: HostPort, workload: string | undefined, log: Logger, metrics: ProxyMetrics) {
    super()
    this.#config = config
    this.#control = control
    this.#workload = workload
    this.#log = log
    this.#metrics = metrics
    try {
      this.#anchors = splitPem(readFileSync(config.trustAnchorsFile, 'utf8'))
    } catch (err) {
      throw new RemoraError('REMORA_CERTIFICATE', `REMORA_TRUST_ANCHORS: cannot read ${config.trustAnchorsFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err })
    }
    if (this.#anchors.length === 0) throw new RemoraError('REMORA_CERTIFICATE', `REMORA_TRUST_ANCHORS: ${config.trustAnchorsFile} holds no PEM certificate`)
  }

  get identity (): string { return this.#config.identity }
  get trustAnchors (): readonly string[] { return this.#anchors }
  /** Undefined until the first certificate arrives. */
  get current (): Credentials | undefined { return this.#current }

  /** Resolves with the first certificate, retrying with backoff until it comes (or stop()). */
  async start (): Promise<Credentials> {
    this.#key = await generateWorkloadKey()
    for (;;) {
      try {
        return this.#install(await this.#request())
      } catch (err) {
        if (this.#stopped) throw err
        await new Promise((resolve) => { this.#timer = setTimeout(resolve, this.#retryDelay(err as Error)) })
      }
    }
  }

  stop (): void {
    this.#stopped = true
    clearTimeout(this.#timer)
  }

  /** Options for a TLS client of the control plane (discovery, renewals): trust the anchors, check its name. */
  controlTls (): tls.ConnectionOptions {
    const c = this.#current
    return {
      ca: [...this.#anchors],
      ...(c !== undefined ? { key: c.key, cert: c.cert } : {}),
      minVersion: 'TLSv1.3',
      ALPNProtocols: ['h2'],
      ...(isIP(this.#control.host) === 0 ? { servername: this.#control.host } : {}),
    }
  }

  #retryDelay (err: Error): number {
    this.#failures++
    this.#metrics.certificateRenewals.inc({ result: 'failed' })
    const delay = Math.max(RETRY_BASE_MS / 2, backoffMs(this.#failures, RETRY_BASE_MS, RETRY_MAX_MS))
    if (this.#failures === 1 || this.#failures % 10 === 0) {
      this.#log.warn({ identity: this.identity, failures: this.#failures, retryInMs: delay, err: err.message }, 'certificate request failed; retrying with backoff')
    }
    return delay
  }

  #install (issued: { certificateChain: string[], trustAnchors: string[] }): Credentials {
    const key = this.#key as WorkloadKey
    const cert = issued.certificateChain.join('')
    const info = certificateInfo(issued.certificateChain[0])
    if (info.identity !== this.identity) throw new Error(`the control plane issued a certificate for ${info.identity}, not ${this.identity}`)
    const ca = [...new Set([...this.#anchors, ...issued.trustAnchors])]
    const context = tls.createSecureContext({ key: key.privateKeyPem, cert, ca, minVersion: 'TLSv1.3' })
    const renewed = this.#current !== undefined
    this.#current = Object.freeze({ key: key.privateKeyPem, cert, ca, identity: info.identity, notAfter: info.notAfter, context })
    this.#failures = 0
    this.#metrics.certificateExpiry.set(info.notAfter.getTime() / 1000)
    this.#metrics.certificateRenewals.inc({ result: renewed ? 'renewed' : 'issued' })
    this.#log.info({ identity: info.identity, serial: info.serial, notAfter: info.notAfter.toISOString() }, renewed ? 'certificate renewed' : 'certificate issued')
    this.#schedule(info.notAfter)
    this.emit('rotated', this.#current)
    return this.#current
  }

  /** 70 % of the way from now (not from notBefore: the CA back-dates that a minute for clock skew). */
  #schedule (notAfter: Date): void {
    const now = Date.now()
    const at = now + (notAfter.getTime() - now) * RENEW_AT_FRACTION
    const renew = (): void => {
      if (this.#stopped) return
      this.#request().then((issued) => { this.#install(issued) }, (err: Error) => {
        if (this.#stopped) return
        // Keep the old certificate while it lasts; retry sooner than its expiry.
        const left = notAfter.getTime() - Date.now()
        this.#timer = setTimeout(renew, Math.min(this.#retryDelay(err), Math.max(1000, left / 4))).unref()
      })
    }
    clearTimeout(this.#timer)
    this.#timer = setTimeout(renew, Math.max(0, at - Date.now())).unref()
  }

  #token (): string {
    const t = this.#config.token
    if ('value' in t) return t.value
    try {
      return readFileSync(t.file, 'utf8').trim()
    } catch (err) {
      throw new Error(`REMORA_TOKEN_FILE: cannot read ${t.file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err })
    }
  }

  async #request (): Promise<{ certificateChain: string[], trustAnchors: string[] }> {
    const csr = await createCsr(this.#key as WorkloadKey, this.identity)
    const token = this.#token()
    const { host, port } = this.#control
    const session = http2.connect(`https://${host.includes(':') ? `[${host}]` : host}:${port}`, this.controlTls())
    try {
      return await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no answer from the control plane at ${host}:${port} within 10 s`)), 10_000)
        session.once('error', (err) => { clearTimeout(timer); reject(err) })
        const headers: http2.OutgoingHttpHeaders = { ':method': 'POST', ':path': CERTIFICATE_PATH, 'content-type': 'application/json', authorization: `Bearer ${token}` }
        if (this.#workload !== undefined) headers[WORKLOAD_HEADER] = this.#workload
        const req = session.request(headers)
        req.setEncoding('utf8')
        let status = 0
        let body = ''
        req.on('response', (h) => { status = Number(h[':status']) })
        req.on('data', (c: string) => { body += c })
        req.on('error', (err) => { clearTimeout(timer); reject(err) })
        req.on('end', () => {
          clearTimeout(timer)
          let parsed: Partial<CertificateResponse & CertificateError>
          try { parsed = JSON.parse(body) as typeof parsed } catch { reject(new Error(`control plane answered ${status} with a body that is not JSON`)); return }
          if (status !== 200 || parsed.certificateChain === undefined) {
            reject(new Error(`control plane refused the certificate (${status} ${parsed.error?.code ?? ''}): ${parsed.error?.message ?? body.slice(0, 200)}`))
            return
          }
          resolve({ certificateChain: [...parsed.certificateChain], trustAnchors: [...(parsed.trustAnchors ?? [])] })
        })
        const request: CertificateRequest = { csr }
        req.end(JSON.stringify(request))
      })
    } finally {
      session.close()
    }
  }
}

function splitPem (text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? []
}
