// The workload's PKCS#10 certificate request (RFC 2986), DER-encoded by hand with node:crypto: empty
// subject, the public key, one extension request holding one URI SAN (the SPIFFE ID), signed with
// ECDSA P-256 / SHA-256. One fixed shape, ~40 lines; an X.509 library for it kept @peculiar/x509 and
// its ASN.1 stack resident in every sidecar (~6.5 MB RSS, issue 19). The control plane's CA still
// parses and verifies requests with @peculiar/x509, and the tests check each one with it and openssl.
import { createPublicKey, sign, type KeyObject } from 'node:crypto'

/** A DER length: short form under 128, else long form. */
function length (n: number): Buffer {
  if (n < 0x80) return Buffer.from([n])
  const bytes: number[] = []
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff)
  return Buffer.from([0x80 | bytes.length, ...bytes])
}

/** A DER TLV with `tag` around `parts`. */
function tlv (tag: number, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts)
  return Buffer.concat([Buffer.from([tag]), length(body.length), body])
}

const SEQUENCE = 0x30
const SET = 0x31
const OCTET_STRING = 0x04
const BIT_STRING = 0x03
/** [6] IMPLICIT IA5String: GeneralName's uniformResourceIdentifier. */
const URI_NAME = 0x86
/** [0] IMPLICIT: the attributes of a CertificationRequestInfo. */
const ATTRIBUTES = 0xa0
const VERSION_0 = Buffer.from([0x02, 0x01, 0x00])
/** pkcs-9-at-extensionRequest, 1.2.840.113549.1.9.14. */
const EXTENSION_REQUEST = Buffer.from([0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e])
/** id-ce-subjectAltName, 2.5.29.17. */
const SUBJECT_ALT_NAME = Buffer.from([0x06, 0x03, 0x55, 0x1d, 0x11])
/** ecdsa-with-SHA256, 1.2.840.10045.4.3.2 (no parameters, RFC 5758). */
const ECDSA_WITH_SHA256 = Buffer.from([0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02])

/** The PEM certificate request for `uri`, signed with `privateKey` (ECDSA P-256). */
export function certificateRequest (privateKey: KeyObject, uri: string): string {
  if (!/^[\x21-\x7e]+$/.test(uri)) throw new Error(`a URI SAN must be printable ASCII without spaces, got ${JSON.stringify(uri)}`)
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' })
  const sanValue = tlv(SEQUENCE, tlv(URI_NAME, Buffer.from(uri, 'ascii')))
  const extensions = tlv(SEQUENCE, tlv(SEQUENCE, SUBJECT_ALT_NAME, tlv(OCTET_STRING, sanValue)))
  const info = tlv(SEQUENCE, VERSION_0, tlv(SEQUENCE), spki, tlv(ATTRIBUTES, tlv(SEQUENCE, EXTENSION_REQUEST, tlv(SET, extensions))))
  // node signs ECDSA in DER (dsaEncoding 'der'), as the BIT STRING of a PKCS#10 request holds it.
  const signature = sign('sha256', info, privateKey)
  const der = tlv(SEQUENCE, info, tlv(SEQUENCE, ECDSA_WITH_SHA256), tlv(BIT_STRING, Buffer.from([0]), signature))
  const body = der.toString('base64').replace(/.{1,64}/g, '$&\n')
  return `-----BEGIN CERTIFICATE REQUEST-----\n${body}-----END CERTIFICATE REQUEST-----\n`
}
