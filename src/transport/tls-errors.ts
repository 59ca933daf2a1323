// TLS failures in words a user can act on: one short reason per OpenSSL/node error code, for the
// handshake-failure metric and the proxy error a caller sees.

export const TLS_REASONS = ['untrusted', 'expired', 'not-yet-valid', 'identity-mismatch', 'no-client-certificate', 'protocol-version', 'no-alpn', 'plaintext', 'other'] as const
export type TlsReason = typeof TLS_REASONS[number]

const BY_CODE: ReadonlyArray<[RegExp, TlsReason]> = [
  [/REMORA_PEER_IDENTITY/, 'identity-mismatch'],
  [/CERT_HAS_EXPIRED|CERTIFICATE_EXPIRED/, 'expired'],
  [/CERT_NOT_YET_VALID/, 'not-yet-valid'],
  [/UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT|UNABLE_TO_GET_ISSUER_CERT|CERT_SIGNATURE_FAILURE|CERT_UNTRUSTED|UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_VERIFY_FAILED/, 'untrusted'],
  [/PEER_DID_NOT_RETURN_A_CERTIFICATE|CERTIFICATE_REQUIRED/, 'no-client-certificate'],
  [/UNSUPPORTED_PROTOCOL|NO_PROTOCOLS_AVAILABLE|PROTOCOL_VERSION|WRONG_VERSION_NUMBER/, 'protocol-version'],
  [/NO_APPLICATION_PROTOCOL|ALPN/, 'no-alpn'],
]

/** The reason for a TLS error, or undefined when the error is not about TLS (refused, reset, timeout). */
export function tlsReason (err: { code?: string, message?: string } | undefined): TlsReason | undefined {
  if (err === undefined) return undefined
  const text = `${err.code ?? ''} ${err.message ?? ''}`
  for (const [re, reason] of BY_CODE) if (re.test(text)) return reason
  return /^ERR_SSL_|^ERR_TLS_/.test(err.code ?? '') ? 'other' : undefined
}
