// The SPIFFE ID a certificate carries (X.509-SVID): its one URI SAN. The one reader of it: for the
// sidecar's own certificate, the CA's, and every peer's at the TLS handshake. Read with node:crypto
// (OpenSSL), not an X.509 library: a sidecar reads peers' certificates all its life, and keeping
// @peculiar/x509 and its ASN.1 stack loaded for that cost ~6.5 MB of every sidecar's RSS (issue 19).
import { X509Certificate } from 'node:crypto'
import type { PeerCertificate } from 'node:tls'
import { checkSpiffeUri } from '../mesh/spiffe-id.ts'

/** Anything that holds a certificate's DER: node's X509Certificate, a TLS peer certificate, an X.509 library's certificate. */
export type CertificateLike = X509Certificate | PeerCertificate | { readonly rawData: ArrayBuffer }

/**
 * The SPIFFE ID in a certificate's URI SAN. Per the X.509-SVID spec (section 2) the certificate must carry exactly
 * one URI SAN and it must be a SPIFFE ID; certificates with none or several are rejected (DNS and IP SANs may sit
 * beside it). Returns any well-formed SPIFFE ID (a CA certificate carries `spiffe://<trust-domain>`); pass the
 * result to `parseSpiffeId` to require a workload identity.
 */
export function spiffeIdOf (cert: CertificateLike): string {
  const der = derOf(cert)
  if (der === undefined) throw new Error('the peer presented no certificate, so no SPIFFE ID')
  // A peer's certificate is read at every handshake, on both sides: parsed once per certificate.
  const fingerprint = 'fingerprint256' in cert && typeof cert.fingerprint256 === 'string' ? cert.fingerprint256 : undefined
  const known = fingerprint === undefined ? undefined : seen.get(fingerprint)
  if (known !== undefined) return known
  const id = read(cert instanceof X509Certificate ? cert : new X509Certificate(der))
  if (fingerprint !== undefined) {
    if (seen.size >= SEEN_MAX) seen.clear()
    seen.set(fingerprint, id)
  }
  return id
}

function derOf (cert: CertificateLike): Buffer | undefined {
  if (cert instanceof X509Certificate) return cert.raw
  if ('rawData' in cert) return Buffer.from(cert.rawData)
  return (cert as PeerCertificate).raw
}

/** Certificates already read, by SHA-256 fingerprint (peers renew daily: a bounded set, emptied when full). */
const seen = new Map<string, string>()
const SEEN_MAX = 4096

/** id-ce-subjectAltName (2.5.29.17) as its DER OID bytes. */
const SAN_OID = Buffer.from([0x06, 0x03, 0x55, 0x1d, 0x11])

function read (cert: X509Certificate): string {
  // OpenSSL shows only the first of several SAN extensions: count them in the DER (the OID's five
  // bytes; anywhere else they would only make a certificate be refused, never accepted).
  const extensions = occurrences(cert.raw, SAN_OID)
  if (extensions > 1) throw new Error(`certificate ${describe(cert)} has ${extensions} subjectAltName extensions; expected one`)
  const names = cert.subjectAltName
  if (names === undefined) throw new Error(`certificate ${describe(cert)} has no subject alternative names, so no SPIFFE ID`)
  const uris = generalNames(names).filter((n) => n.type === 'URI').map((n) => n.value)
  if (uris.length === 0) throw new Error(`certificate ${describe(cert)} has no URI SAN, so no SPIFFE ID`)
  if (uris.length > 1) throw new Error(`certificate ${describe(cert)} has ${uris.length} URI SANs (${uris.join(', ')}); an X.509-SVID carries exactly one`)
  const [uri] = uris
  try {
    checkSpiffeUri(uri)
  } catch (err) {
    throw new Error(`certificate ${describe(cert)}: its URI SAN is not a SPIFFE ID: ${(err as Error).message}`, { cause: err })
  }
  return uri
}

/**
 * node's subjectAltName: `TYPE:value` entries joined by ", ", where a value that could be misread
 * (a comma, a quote, a control character…) is written as a JSON string — node's own rule, so that
 * the text parses one way only (CVE-2021-44532). A value that does not parse is an error.
 */
export function generalNames (text: string): Array<{ type: string, value: string }> {
  const out: Array<{ type: string, value: string }> = []
  let at = 0
  while (at < text.length) {
    const colon = text.indexOf(':', at)
    if (colon < 0) throw new Error(`cannot read the subject alternative names "${text}"`)
    const type = text.slice(at, colon)
    let value: string
    let next: number
    if (text[colon + 1] === '"') {
      // A JSON string: find its closing quote (not an escaped one).
      let end = colon + 2
      while (end < text.length && text[end] !== '"') end += text[end] === '\\' ? 2 : 1
      if (end >= text.length) throw new Error(`cannot read the subject alternative names "${text}"`)
      value = JSON.parse(text.slice(colon + 1, end + 1)) as string
      next = end + 1
    } else {
      const comma = text.indexOf(', ', colon + 1)
      next = comma < 0 ? text.length : comma
      value = text.slice(colon + 1, next)
    }
    out.push({ type, value })
    if (next < text.length) {
      if (!text.startsWith(', ', next)) throw new Error(`cannot read the subject alternative names "${text}"`)
      next += 2
    }
    at = next
  }
  return out
}

function occurrences (haystack: Buffer, needle: Buffer): number {
  let n = 0
  for (let at = haystack.indexOf(needle); at >= 0; at = haystack.indexOf(needle, at + needle.length)) n++
  return n
}

function describe (cert: X509Certificate): string {
  return `"${cert.subject.replaceAll('\n', ', ')}" (serial ${cert.serialNumber})`
}
