// POST /v1/certificate on 15012: a CSR plus proof of identity in, a workload certificate out — only
// ever for the identity the proof shows. Refusals are logged with both identities (never the token).
import type { ServerHttp2Stream, IncomingHttpHeaders } from 'node:http2'
import type { Logger } from 'pino'
import { CsrRefused, Unauthenticated } from '../errors.ts'
import type { CertificateAuthority } from '../identity/ca.ts'
import { CERTIFICATE_PATH, WORKLOAD_HEADER, type CertificateError, type CertificateRequest, type CertificateResponse } from '../identity/certificate-api.ts'
import type { IdentityProof } from './identity-proof.ts'
import type { ControlMetrics } from './metrics.ts'

const MAX_BODY = 64 * 1024

export class Signer {
  readonly #ca: CertificateAuthority
  readonly #proof: IdentityProof
  readonly #ttlMs: number
  readonly #log: Logger
  readonly #metrics: ControlMetrics

  constructor (ca: CertificateAuthority, proof: IdentityProof, ttlMs: number, log: Logger, metrics: ControlMetrics) {
    this.#ca = ca
    this.#proof = proof
    this.#ttlMs = ttlMs
    this.#log = log
    this.#metrics = metrics
  }

  handle (stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    const reply = (status: number, body: unknown): void => {
      if (stream.destroyed) return
      stream.respond({ ':status': status, 'content-type': 'application/json', 'cache-control': 'no-store' })
      stream.end(JSON.stringify(body) + '\n')
    }
    const fail = (status: number, code: string, message: string): void => {
      this.#metrics.certificates.inc({ result: code })
      const body: CertificateError = { error: { code, message } }
      reply(status, body)
    }
    if (headers[':method'] !== 'POST') return fail(405, 'method_not_allowed', `use POST ${CERTIFICATE_PATH}`)
    const auth = String(headers.authorization ?? '')
    const token = /^Bearer (\S+)$/.exec(auth)?.[1]
    const chunks: Buffer[] = []
    let size = 0
    stream.on('data', (c: Buffer) => {
      size += c.length
      if (size > MAX_BODY) { fail(413, 'too_large', `the request body is over ${MAX_BODY} bytes`); stream.close() } else chunks.push(c)
    })
    stream.on('end', () => {
      if (size > MAX_BODY) return
      if (token === undefined) return fail(401, 'unauthenticated', 'send the proof of identity as "authorization: Bearer <token>" (a projected service account token with audience remora, or the workload\'s bootstrapToken)')
      let csr: unknown
      try {
        csr = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as Partial<Record<keyof CertificateRequest, unknown>>).csr
      } catch {
        return fail(400, 'bad_request', 'the body must be JSON: {"csr": "<PEM certificate request>"}')
      }
      if (typeof csr !== 'string') return fail(400, 'bad_request', 'the body must be JSON: {"csr": "<PEM certificate request>"}')
      void this.#sign(token, csr, headers, reply, fail)
    })
  }

  async #sign (token: string, csr: string, headers: IncomingHttpHeaders, reply: (status: number, body: unknown) => void, fail: (status: number, code: string, message: string) => void): Promise<void> {
    let identity: string
    try {
      identity = await this.#proof.verify(token)
    } catch (err) {
      const message = err instanceof Unauthenticated ? err.message : `the identity could not be checked: ${(err as Error).message.split('\n')[0]}`
      this.#log.warn({ workload: headers[WORKLOAD_HEADER], why: message }, 'certificate refused: the proof of identity does not hold')
      return fail(err instanceof Unauthenticated ? 401 : 503, err instanceof Unauthenticated ? 'unauthenticated' : 'unavailable', message)
    }
    try {
      const issued = await this.#ca.sign(csr, identity, { ttlMs: this.#ttlMs })
      this.#metrics.certificates.inc({ result: 'issued' })
      this.#log.info({ identity, serial: issued.serial, notAfter: issued.notAfter.toISOString() }, 'certificate issued')
      const body: CertificateResponse = { identity, certificateChain: issued.chainPem, trustAnchors: issued.trustAnchorsPem, notAfter: issued.notAfter.toISOString() }
      reply(200, body)
    } catch (err) {
      if (!(err instanceof CsrRefused)) throw err
      const code = err.reason === 'identity-mismatch' ? 'identity_mismatch' : 'bad_csr'
      this.#log.warn({ proven: identity, requested: err.requested, reason: err.reason }, `certificate refused: ${err.message}`)
      fail(err.reason === 'identity-mismatch' ? 403 : 400, code, err.message)
    }
  }
}
