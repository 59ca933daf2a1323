// The SPIFFE ID a certificate carries (X.509-SVID): its one URI SAN, read with @peculiar/x509. The one
// reader of it: for the sidecar's own certificate, the CA's, and every peer's at the TLS handshake.
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import type { X509Certificate as NodeX509Certificate } from 'node:crypto'
import type { PeerCertificate } from 'node:tls'
import { checkSpiffeUri } from '../mesh/spiffe-id.ts'

x509.cryptoProvider.set(globalThis.crypto)

const SUBJECT_ALT_NAME = '2.5.29.17'

/**
 * The SPIFFE ID in a certificate's URI SAN. Per the X.509-SVID spec (section 2) the certificate must carry exactly
 * one URI SAN and it must be a SPIFFE ID; certificates with none or several are rejected (DNS and IP SANs may sit
 * beside it). Returns any well-formed SPIFFE ID (a CA certificate carries `spiffe://<trust-domain>`); pass the
 * result to `parseSpiffeId` to require a workload identity.
 */
export function spiffeIdOf (cert: x509.X509Certificate | NodeX509Certificate | PeerCertificate): string {
  if (!(cert instanceof x509.X509Certificate) && cert.raw === undefined) throw new Error('the peer presented no certificate, so no SPIFFE ID')
  // A peer's certificate is read at every handshake, on both sides: parsed once per certificate.
  const fingerprint = 'fingerprint256' in cert && typeof cert.fingerprint256 === 'string' ? cert.fingerprint256 : undefined
  const known = fingerprint === undefined ? undefined : seen.get(fingerprint)
  if (known !== undefined) return known
  const id = read(cert)
  if (fingerprint !== undefined) {
    if (seen.size >= SEEN_MAX) seen.clear()
    seen.set(fingerprint, id)
  }
  return id
}

/** Certificates already read, by SHA-256 fingerprint (peers renew daily: a bounded set, emptied when full). */
const seen = new Map<string, string>()
const SEEN_MAX = 4096

function read (cert: x509.X509Certificate | NodeX509Certificate | PeerCertificate): string {
  const parsed = cert instanceof x509.X509Certificate ? cert : new x509.X509Certificate(new Uint8Array(cert.raw))
  const sanExtensions = parsed.getExtensions(SUBJECT_ALT_NAME)
  if (sanExtensions.length === 0) throw new Error(`certificate ${describe(parsed)} has no subject alternative names, so no SPIFFE ID`)
  if (sanExtensions.length > 1) throw new Error(`certificate ${describe(parsed)} has ${sanExtensions.length} subjectAltName extensions; expected one`)
  let names: readonly x509.GeneralName[]
  try {
    names = new x509.SubjectAlternativeNameExtension(sanExtensions[0].rawData).names.items
  } catch (err) {
    throw new Error(`certificate ${describe(parsed)}: cannot read its subject alternative names: ${(err as Error).message}`, { cause: err })
  }
  const uris = names.filter((n) => n.type === 'url').map((n) => n.value)
  if (uris.length === 0) throw new Error(`certificate ${describe(parsed)} has no URI SAN, so no SPIFFE ID`)
  if (uris.length > 1) throw new Error(`certificate ${describe(parsed)} has ${uris.length} URI SANs (${uris.join(', ')}); an X.509-SVID carries exactly one`)
  const [uri] = uris
  try {
    checkSpiffeUri(uri)
  } catch (err) {
    throw new Error(`certificate ${describe(parsed)}: its URI SAN is not a SPIFFE ID: ${(err as Error).message}`, { cause: err })
  }
  return uri
}

function describe (cert: x509.X509Certificate): string {
  return `"${cert.subject}" (serial ${cert.serialNumber})`
}
