// The PEM a user gives for the control plane's CA (root, issuer, issuer key), parsed and checked before the CA uses it.
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import { KeyObject, createPrivateKey, createPublicKey, type webcrypto } from 'node:crypto'
import { checkSpiffeUri, checkTrustDomain } from '../mesh/spiffe-id.ts'

x509.cryptoProvider.set(globalThis.crypto)

const OID_SUBJECT_ALT_NAME = '2.5.29.17'
const OID_BASIC_CONSTRAINTS = '2.5.29.19'
const OID_KEY_USAGE = '2.5.29.15'
const OID_SUBJECT_KEY_IDENTIFIER = '2.5.29.14'

export interface LoadOptions {
  /** PEM of the root (trust anchor) certificate; several roots (during a root rotation) are all trusted. */
  readonly rootPem: string
  /** PEM of the issuer (intermediate) certificate that signs workload certificates. */
  readonly issuerPem: string
  /** PEM of the issuer's private key (PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`), ECDSA P-256. */
  readonly issuerKeyPem: string
  readonly trustDomain: string
  /** What to call each input in error messages, such as the file it came from. */
  readonly names?: { readonly root?: string, readonly issuer?: string, readonly issuerKey?: string }
  /** The time to check validity at; default now. */
  readonly now?: Date
}

/** What each input is called in error messages. */
interface InputNames { readonly root: string, readonly issuer: string, readonly issuerKey: string }

/** A CA's parts as the user gave them, every check passed: what `CertificateAuthority.load` builds the CA from. */
export interface CheckedCaInput {
  readonly trustDomain: string
  readonly roots: x509.X509Certificate[]
  readonly issuer: x509.X509Certificate
  readonly issuerKey: webcrypto.CryptoKey
  readonly issuerKeyObject: KeyObject
  /** The issuer's subject key identifier, hex: every certificate it signs names it as its authority key. */
  readonly issuerKeyId: string
}

/**
 * Checks that each input parses, that the root is a self-signed CA and the issuer a CA that the root signed, that
 * the key is the issuer's ECDSA P-256 key, that the CA certificates carry no other trust domain, and that nothing
 * is expired or not yet valid. Each error names the input (`names`) that is wrong.
 */
export async function checkCaInput (options: LoadOptions): Promise<CheckedCaInput> {
  const trustDomain = checkTrustDomain(options.trustDomain)
  const now = options.now ?? new Date()
  const names: InputNames = {
    root: options.names?.root ?? 'root certificate',
    issuer: options.names?.issuer ?? 'issuer certificate',
    issuerKey: options.names?.issuerKey ?? 'issuer key',
  }
  const roots = parseCertificates(options.rootPem, names.root)
  const issuer = parseIssuer(options.issuerPem, names.issuer)
  for (const root of roots) {
    await checkRoot(root, roots.length > 1 ? `${names.root}: certificate "${root.subject}"` : names.root, trustDomain, now)
  }
  await checkIssuer(issuer, roots, names, trustDomain, now)
  const issuerKeyObject = readIssuerKey(options.issuerKeyPem, issuer, names)
  const issuerKey = issuerKeyObject.toCryptoKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign'])
  const ski = issuer.getExtension<x509.SubjectKeyIdentifierExtension>(OID_SUBJECT_KEY_IDENTIFIER)
  const issuerKeyId = ski?.keyId ?? Buffer.from(await issuer.publicKey.getKeyIdentifier()).toString('hex')
  return { trustDomain, roots, issuer, issuerKey, issuerKeyObject, issuerKeyId }
}

/** Every certificate in a PEM text; anything else in it (a private key in a certificate file) is an error. */
function parseCertificates (pem: string, name: string): x509.X509Certificate[] {
  const blocks = typeof pem === 'string' ? x509.PemConverter.decodeWithHeaders(pem) : []
  if (blocks.length === 0) throw new Error(`${name}: no PEM "CERTIFICATE" in it`)
  const other = blocks.find((b) => b.type !== 'CERTIFICATE')
  if (other !== undefined) throw new Error(`${name}: holds a PEM "${other.type}"; expected only certificates`)
  return blocks.map((b, i) => {
    try {
      return new x509.X509Certificate(b.rawData)
    } catch (err) {
      const which = blocks.length > 1 ? ` ${i + 1} of ${blocks.length}` : ''
      throw new Error(`${name}: cannot parse certificate${which}: ${(err as Error).message}`, { cause: err })
    }
  })
}

/** The one certificate of the issuer's PEM: a chain there would be ambiguous about which one signs. */
function parseIssuer (pem: string, name: string): x509.X509Certificate {
  const issuers = parseCertificates(pem, name)
  if (issuers.length !== 1) throw new Error(`${name}: expected one certificate (the issuer), found ${issuers.length}`)
  return issuers[0]
}

/** A trust anchor: a valid CA of this trust domain that signed itself (not an intermediate given by mistake). */
async function checkRoot (root: x509.X509Certificate, where: string, trustDomain: string, now: Date): Promise<void> {
  checkCa(root, where)
  checkValidity(root, where, now)
  checkCaTrustDomain(root, where, trustDomain)
  if (root.subject !== root.issuer || !await root.verify({ signatureOnly: true })) {
    throw new Error(`${where}: not a self-signed root (issued by "${root.issuer}"); give the trust anchor, not an intermediate`)
  }
}

/** The issuer: a valid CA of this trust domain that one of the roots signed, so sidecars trusting the roots accept its leaves. */
async function checkIssuer (issuer: x509.X509Certificate, roots: readonly x509.X509Certificate[], names: InputNames, trustDomain: string, now: Date): Promise<void> {
  checkCa(issuer, names.issuer)
  checkValidity(issuer, names.issuer, now)
  checkCaTrustDomain(issuer, names.issuer, trustDomain)
  const signer = await findSigner(issuer, roots)
  if (signer === undefined) {
    throw new Error(`${names.issuer}: not signed by the root in ${names.root} ("${issuer.subject}" names its issuer "${issuer.issuer}", and no root's key verifies its signature)`)
  }
}

/** The issuer's private key: PEM, ECDSA P-256, and the key of the issuer certificate (not some other key). */
function readIssuerKey (pem: string, issuer: x509.X509Certificate, names: InputNames): KeyObject {
  let keyObject: KeyObject
  try {
    keyObject = createPrivateKey({ key: pem, format: 'pem' })
  } catch (err) {
    throw new Error(`${names.issuerKey}: not a PEM private key: ${(err as Error).message}`, { cause: err })
  }
  const curve = keyObject.asymmetricKeyDetails?.namedCurve
  if (keyObject.asymmetricKeyType !== 'ec' || curve !== 'prime256v1') {
    throw new Error(`${names.issuerKey}: expected an ECDSA P-256 key, got ${keyObject.asymmetricKeyType ?? 'unknown'}${curve === undefined ? '' : ` ${curve}`}`)
  }
  const keySpki = createPublicKey(keyObject).export({ type: 'spki', format: 'der' })
  if (!keySpki.equals(Buffer.from(issuer.publicKey.rawData))) {
    throw new Error(`${names.issuerKey}: this key does not belong to the issuer certificate in ${names.issuer} (its public key differs)`)
  }
  return keyObject
}

function checkCa (cert: x509.X509Certificate, name: string): void {
  const bc = cert.getExtension<x509.BasicConstraintsExtension>(OID_BASIC_CONSTRAINTS)
  if (bc === null || !bc.ca) throw new Error(`${name}: "${cert.subject}" is not a CA certificate (basicConstraints CA:true missing)`)
  const ku = cert.getExtension<x509.KeyUsagesExtension>(OID_KEY_USAGE)
  if (ku !== null && (ku.usages & x509.KeyUsageFlags.keyCertSign) === 0) throw new Error(`${name}: "${cert.subject}" may not sign certificates (keyUsage lacks keyCertSign)`)
  const alg = cert.publicKey.algorithm as webcrypto.EcKeyAlgorithm
  if (alg.name !== 'ECDSA' || alg.namedCurve !== 'P-256') throw new Error(`${name}: "${cert.subject}" has a ${alg.name} ${alg.namedCurve ?? ''} key; remora CAs use ECDSA P-256`)
}

function checkValidity (cert: x509.X509Certificate, name: string, now: Date): void {
  if (now < cert.notBefore) throw new Error(`${name}: "${cert.subject}" is not valid until ${cert.notBefore.toISOString()}`)
  if (now > cert.notAfter) throw new Error(`${name}: "${cert.subject}" expired at ${cert.notAfter.toISOString()}`)
}

/** A CA certificate may carry the SPIFFE ID of its trust domain (X.509-SVID 3.2); another trust domain is an error. */
function checkCaTrustDomain (cert: x509.X509Certificate, name: string, trustDomain: string): void {
  const san = cert.getExtension<x509.SubjectAlternativeNameExtension>(OID_SUBJECT_ALT_NAME)
  if (san === null) return
  for (const n of san.names.items) {
    if (n.type !== 'url' || !n.value.startsWith('spiffe://')) continue
    const { trustDomain: td, segments } = checkSpiffeUri(n.value)
    if (td !== trustDomain || segments.length > 0) {
      throw new Error(`${name}: "${cert.subject}" carries ${n.value}, but the trust domain is ${trustDomain} (expected spiffe://${trustDomain})`)
    }
  }
}

async function findSigner (cert: x509.X509Certificate, roots: readonly x509.X509Certificate[]): Promise<x509.X509Certificate | undefined> {
  for (const root of roots) {
    if (root.subject !== cert.issuer) continue
    try {
      if (await cert.verify({ publicKey: root.publicKey, signatureOnly: true })) return root
    } catch {
      // a key of another type: not this root
    }
  }
  return undefined
}
