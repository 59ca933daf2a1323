// The certificate API on the control plane's port 15012 (POST /v1/certificate): its path, headers
// and messages, shared by the sidecar that asks and the control plane that signs (as
// discovery/wire.ts is for discovery).

export const CERTIFICATE_PATH = '/v1/certificate'

/** Names the calling workload in the control plane's log lines (certificates and watches); never trusted for identity. */
export const WORKLOAD_HEADER = 'remora-workload'

/** What the sidecar sends, with `authorization: Bearer <proof of identity>`. */
export interface CertificateRequest {
  /** PEM certificate request for the sidecar's own key, naming its SPIFFE ID. */
  readonly csr: string
}

/** What the sidecar gets back (200). */
export interface CertificateResponse {
  readonly identity: string
  /** Leaf first, then the issuer: what the sidecar presents in TLS. */
  readonly certificateChain: readonly string[]
  readonly trustAnchors: readonly string[]
  readonly notAfter: string
}

/** A refusal (4xx/5xx): a stable code and a message saying what to do. */
export interface CertificateError {
  readonly error: { readonly code: string, readonly message: string }
}
