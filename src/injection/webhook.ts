// The admission webhook's HTTPS server (port 15017): POST /inject takes an AdmissionReview v1 and answers it
// (review.ts); GET /ready says it serves. Run inside `remora control` (with a certificate from the mesh CA) and by
// `remora injector` (with cert-manager's files). The certificate is swapped in place (setCredentials): connections
// open keep theirs, new ones get the new one. Whatever arrives, the process does not fall over.
import https from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Logger } from 'pino'
import { RemoraError } from '../errors.ts'
import type { HostPort } from '../mesh/host-port.ts'
import type { MeshWide } from './pod.ts'
import { ADMISSION_API_VERSION, reviewAdmission, type ReviewOutcome, type ReviewResult } from './review.ts'

/** The path the MutatingWebhookConfiguration names (clientConfig.service.path). */
export const WEBHOOK_PATH = '/inject'
export const READY_PATH = '/ready'
/**
 * Largest request body read: the API server sends a pod (etcd keeps objects up to 1.5 MiB) inside a review that may
 * carry it twice (object and oldObject); beyond this the answer is 413 and nothing is parsed.
 */
export const MAX_REVIEW_BYTES = 4 * 1024 * 1024

export interface WebhookTls { readonly key: string, readonly cert: string }

export interface WebhookOptions {
  readonly mesh: MeshWide
  readonly log: Logger
  readonly tls: WebhookTls
  readonly maxBodyBytes?: number
  /** Each review answered, by outcome (for metrics and tests). */
  readonly onReview?: (outcome: ReviewOutcome) => void
}

export class InjectionWebhook {
  readonly #o: WebhookOptions
  readonly #server: https.Server

  constructor (options: WebhookOptions) {
    this.#o = options
    this.#server = https.createServer({ key: options.tls.key, cert: options.tls.cert, minVersion: 'TLSv1.2' }, (req, res) => this.#handle(req, res))
    // The API server gives up on a webhook after timeoutSeconds (at most 30 s): nothing takes longer here.
    this.#server.requestTimeout = 30_000
    this.#server.headersTimeout = 10_000
    this.#server.on('tlsClientError', (err) => options.log.debug({ err: err.message }, 'admission webhook: TLS handshake failed'))
  }

  /** Listens on addr; resolves with the address bound (port 0 picks one). */
  listen (addr: HostPort): Promise<HostPort> {
    return new Promise((resolve, reject) => {
      const failed = (err: NodeJS.ErrnoException): void => reject(new RemoraError('REMORA_LISTEN', `admission webhook listener cannot bind ${addr.host}:${addr.port}: ${err.code ?? err.message}`))
      this.#server.once('error', failed)
      this.#server.listen(addr.port, addr.host, () => {
        this.#server.off('error', failed)
        const a = this.#server.address() as { address: string, port: number }
        resolve({ host: a.address, port: a.port })
      })
    })
  }

  /** A new certificate and key for the connections from now on. */
  setCredentials (tls: WebhookTls): void {
    this.#server.setSecureContext({ key: tls.key, cert: tls.cert, minVersion: 'TLSv1.2' })
  }

  close (): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve())
      this.#server.closeAllConnections()
    })
  }

  #handle (req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0]
    if (path === READY_PATH && (req.method === 'GET' || req.method === 'HEAD')) return plain(res, 200, 'ready\n')
    if (path !== WEBHOOK_PATH) { req.resume(); return plain(res, 404, `not found: the admission webhook is POST ${WEBHOOK_PATH}\n`) }
    if (req.method !== 'POST') { req.resume(); res.setHeader('Allow', 'POST'); return plain(res, 405, `POST an AdmissionReview ${ADMISSION_API_VERSION} to ${WEBHOOK_PATH}\n`) }
    const max = this.#o.maxBodyBytes ?? MAX_REVIEW_BYTES
    const tooLarge = (): void => {
      plain(res, 413, `the AdmissionReview is larger than ${max} bytes\n`)
      // Nothing more of it is read.
      res.once('finish', () => req.destroy())
    }
    if (Number(req.headers['content-length'] ?? 0) > max) return tooLarge()
    const chunks: Buffer[] = []
    let size = 0
    let over = false
    req.on('data', (chunk: Buffer) => {
      if (over) return
      size += chunk.length
      if (size > max) { over = true; tooLarge(); return }
      chunks.push(chunk)
    })
    req.on('error', () => {})
    req.on('end', () => { if (!over) this.#answer(Buffer.concat(chunks).toString('utf8'), res) })
  }

  #answer (text: string, res: ServerResponse): void {
    let body: unknown
    try {
      body = JSON.parse(text)
    } catch (err) {
      this.#o.onReview?.('malformed')
      this.#o.log.warn({ err: (err as Error).message }, 'admission webhook: the request body is not JSON; answered 400')
      return plain(res, 400, `the body is not JSON (an AdmissionReview ${ADMISSION_API_VERSION} is expected): ${(err as Error).message}\n`)
    }
    let result: ReviewResult
    try {
      result = reviewAdmission(body, this.#o.mesh)
    } catch (err) {
      // A bug, not the pod's fault: the pod is let through as it is (as failurePolicy Ignore would), and said loudly.
      const request = (body as { request?: { uid?: unknown } } | null)?.request
      const uid = typeof request?.uid === 'string' ? request.uid : ''
      this.#o.log.error({ uid, err: (err as Error).stack ?? String(err) }, 'admission webhook: unexpected error; the pod is admitted without the sidecar')
      result = { outcome: 'malformed', review: { apiVersion: ADMISSION_API_VERSION, kind: 'AdmissionReview', response: { uid, allowed: true, status: { message: `remora injector: unexpected error, not injected: ${(err as Error).message}` } } } }
    }
    this.#o.onReview?.(result.outcome)
    const { uid } = result.review.response
    if (result.outcome === 'injected') this.#o.log.info({ uid, object: result.object, ops: result.ops?.length }, `admission webhook: injected the sidecar into ${result.object ?? 'a pod'}`)
    else if (result.outcome === 'refused') this.#o.log.warn({ uid, object: result.object }, `admission webhook: refused ${result.object ?? 'a pod'}: ${result.why ?? ''}`)
    else if (result.outcome === 'skipped') this.#o.log.info({ uid, object: result.object }, `admission webhook: ${result.why ?? 'not injected'}`)
    else this.#o.log.warn({ uid, outcome: result.outcome }, `admission webhook: ${result.why ?? 'allowed unchanged'}`)
    const json = JSON.stringify(result.review)
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(json) }).end(json)
  }
}

function plain (res: ServerResponse, code: number, text: string): void {
  if (res.headersSent) return
  res.writeHead(code, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text), ...(code === 413 && { Connection: 'close' }) }).end(text)
}
