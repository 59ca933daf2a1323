// The control plane's certificate authority: a root (trust anchor) and an issuer that signs workload certificates from CSRs.
// Its operations: make a CA, sign CSRs, issue the control plane's serving certificate; the PEM it loads is checked in ca-input.ts.
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import { KeyObject, type webcrypto } from 'node:crypto'
import { inspect } from 'node:util'
import { WORKLOAD_KEY_ALGORITHM, generateWorkloadKey, type WorkloadKey } from './keys.ts'
import { checkTrustDomain, parseSpiffeId, trustDomainId } from '../mesh/spiffe-id.ts'
import { checkCaInput, type LoadOptions } from './ca-input.ts'
import { CsrRefused, type CsrRefusedReason } from '../errors.ts'

export type { LoadOptions } from './ca-input.ts'

x509.cryptoProvider.set(globalThis.crypto)

const MINUTE = 60_000
const DAY = 24 * 60 * MINUTE
/** Root (trust anchor) lifetime unless told: 10 years. */
export const DEFAULT_ROOT_TTL_MS = 3650 * DAY
/** Issuer (intermediate) lifetime unless told: 1 year. */
export const DEFAULT_ISSUER_TTL_MS = 365 * DAY
/** Workload certificate lifetime unless told: 24 hours (DESIGN.md "Identity"). */
export const DEFAULT_LEAF_TTL_MS = DAY
/** Leaf certificates start this much before `now`, so a peer whose clock is a little behind accepts them. */
export const CLOCK_SKEW_MS = MINUTE
/** A CSR larger than this is refused unread (a P-256 CSR with one URI SAN is about 400 bytes of PEM). */
const MAX_CSR_PEM_LENGTH = 16 * 1024
/** Every certificate this CA issues has this subject; SPIFFE identifies by the URI SAN only (X.509-SVID 3.1). */
const LEAF_SUBJECT = 'O=remora'
const OID_SUBJECT_ALT_NAME = '2.5.29.17'

export interface CreateOptions {
  readonly trustDomain: string
  /** The time the CA is made at (tests); default now. */
  readonly now?: Date
  readonly rootTtlMs?: number
  readonly issuerTtlMs?: number
}

export interface SignOptions {
  /** Lifetime; default 24 h. Never runs past the issuer's notAfter. */
  readonly ttlMs?: number
  readonly now?: Date
}

/** A certificate this CA issued, with what a TLS endpoint needs beside it. */
export interface IssuedCertificate {
  /** The leaf alone. */
  readonly certificatePem: string
  /** What to present in TLS (`cert: chainPem.join('')`): the leaf, then the issuer. */
  readonly chainPem: readonly string[]
  /** What to trust (`ca: trustAnchorsPem`): the root(s), never the issuer. */
  readonly trustAnchorsPem: readonly string[]
  readonly notBefore: Date
  readonly notAfter: Date
  /** Serial number, lower-case hex. */
  readonly serial: string
  /** The SPIFFE ID in the single URI SAN. */
  readonly identity: string
}

/** A serving certificate and its private key (kept out of logs like every WorkloadKey). */
export interface ServingCertificate extends IssuedCertificate {
  readonly key: WorkloadKey
}

export interface ServingOptions {
  readonly dnsNames?: readonly string[]
  readonly ipAddresses?: readonly string[]
  /** The control plane's own SPIFFE ID, such as spiffe://cluster.local/ns/remora-system/sa/remora-control. */
  readonly identity: string
  readonly ttlMs?: number
  readonly now?: Date
}

/** The PEM files of a CA. Only for writing a development CA to disk; see `CertificateAuthority.export`. */
export interface ExportedCa {
  readonly rootPem: string
  readonly issuerPem: string
  readonly issuerKeyPem: string
}

interface Public {
  subject: string
  serial: string
  notBefore: string
  notAfter: string
  sha256: string
}

/**
 * A root (the trust anchor every sidecar gets) and an issuer (intermediate, CA:true pathLen 0) that signs
 * 24 h workload certificates for identities the caller has proven. The issuer's private key lives in a `#private`
 * field: JSON.stringify, util.inspect and pino see only public facts. `create` discards the root's private key
 * as soon as the issuer is signed, so this object never holds it.
 */
export class CertificateAuthority {
  readonly #trustDomain: string
  readonly #issuer: x509.X509Certificate
  readonly #issuerKey: webcrypto.CryptoKey
  readonly #issuerKeyObject: KeyObject
  readonly #issuerKeyId: string
  readonly #rootsPem: readonly string[]
  readonly #issuerPem: string
  readonly #public: { roots: Public[], issuer: Public }

  private constructor (trustDomain: string, roots: x509.X509Certificate[], issuer: x509.X509Certificate, issuerKey: webcrypto.CryptoKey, issuerKeyObject: KeyObject, issuerKeyId: string, fingerprints: string[]) {
    this.#trustDomain = trustDomain
    this.#issuer = issuer
    this.#issuerKey = issuerKey
    this.#issuerKeyObject = issuerKeyObject
    this.#issuerKeyId = issuerKeyId
    this.#rootsPem = Object.freeze(roots.map(pemOf))
    this.#issuerPem = pemOf(issuer)
    const info = (c: x509.X509Certificate, sha256: string): Public => ({
      subject: c.subject, serial: c.serialNumber, notBefore: c.notBefore.toISOString(), notAfter: c.notAfter.toISOString(), sha256,
    })
    this.#public = { roots: roots.map((r, i) => info(r, fingerprints[i])), issuer: info(issuer, fingerprints[roots.length]) }
  }

  /** A new CA: a self-signed root (10 y) and an issuer it signs (1 y), both ECDSA P-256 / SHA-256. */
  static async create (options: CreateOptions): Promise<CertificateAuthority> {
    const trustDomain = checkTrustDomain(options.trustDomain)
    const now = options.now ?? new Date()
    const rootTtlMs = positive(options.rootTtlMs ?? DEFAULT_ROOT_TTL_MS, 'rootTtlMs')
    const issuerTtlMs = positive(options.issuerTtlMs ?? DEFAULT_ISSUER_TTL_MS, 'issuerTtlMs')
    const subtle = globalThis.crypto.subtle
    // The root key is not extractable and is dropped when this function returns.
    const rootKeys = await subtle.generateKey(WORKLOAD_KEY_ALGORITHM, false, ['sign', 'verify'])
    const issuerKeys = await subtle.generateKey(WORKLOAD_KEY_ALGORITHM, true, ['sign', 'verify'])
    const rootSki = await x509.SubjectKeyIdentifierExtension.create(rootKeys.publicKey)
    const issuerSki = await x509.SubjectKeyIdentifierExtension.create(issuerKeys.publicKey)
    const caSan = new x509.SubjectAlternativeNameExtension([{ type: 'url', value: trustDomainId(trustDomain) }])
    const rootNotAfter = new Date(now.getTime() + rootTtlMs)
    const root = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: `O=remora, CN=remora root CA (${trustDomain})`,
      issuer: `O=remora, CN=remora root CA (${trustDomain})`,
      notBefore: new Date(now.getTime() - CLOCK_SKEW_MS),
      notAfter: rootNotAfter,
      publicKey: rootKeys.publicKey,
      signingKey: rootKeys.privateKey,
      signingAlgorithm: WORKLOAD_KEY_ALGORITHM,
      extensions: caExtensions(undefined, rootSki, rootSki.keyId, caSan),
    })
    const issuer = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: `O=remora, CN=remora issuer CA (${trustDomain})`,
      issuer: root.subjectName,
      notBefore: new Date(now.getTime() - CLOCK_SKEW_MS),
      notAfter: new Date(Math.min(now.getTime() + issuerTtlMs, rootNotAfter.getTime())),
      publicKey: issuerKeys.publicKey,
      signingKey: rootKeys.privateKey,
      signingAlgorithm: WORKLOAD_KEY_ALGORITHM,
      extensions: caExtensions(0, issuerSki, rootSki.keyId, caSan),
    })
    const fresh = (c: x509.X509Certificate) => new x509.X509Certificate(c.rawData)
    return new CertificateAuthority(trustDomain, [fresh(root)], fresh(issuer), issuerKeys.privateKey,
      KeyObject.from(issuerKeys.privateKey), issuerSki.keyId, await fingerprints([root, issuer]))
  }

  /** A CA from PEM files, once `checkCaInput` (ca-input.ts) has found them usable; its errors name the input that is wrong. */
  static async load (options: LoadOptions): Promise<CertificateAuthority> {
    const input = await checkCaInput(options)
    return new CertificateAuthority(input.trustDomain, input.roots, input.issuer, input.issuerKey, input.issuerKeyObject,
      input.issuerKeyId, await fingerprints([...input.roots, input.issuer]))
  }

  get trustDomain (): string { return this.#trustDomain }
  /** What every sidecar trusts: the root certificate(s), PEM. Never the issuer. */
  get trustAnchorsPem (): readonly string[] { return this.#rootsPem }
  /** The issuer certificate, PEM (sent after the leaf in every chain). */
  get issuerPem (): string { return this.#issuerPem }
  /** When the issuer expires: no certificate outlives it, so replace the CA before. */
  get issuerNotAfter (): Date { return this.#issuer.notAfter }

  /**
   * The PEM files of this CA, private key included, ONLY for writing a development CA to disk (so that a local
   * mesh keeps its identities across restarts). The control plane never serves or logs this. The root's private
   * key is not part of it: a CA made by `create` never keeps it, so a new issuer means a new CA.
   */
  export (): ExportedCa {
    return {
      rootPem: this.#rootsPem.join(''),
      issuerPem: this.#issuerPem,
      issuerKeyPem: this.#issuerKeyObject.export({ type: 'pkcs8', format: 'pem' }).toString(),
    }
  }

  /**
   * Signs a workload certificate for `identity`, the SPIFFE ID the caller PROVED (token review, bootstrap token).
   * The CSR must be a PKCS#10 request with a valid self-signature, an ECDSA P-256 key, and ask for exactly one name,
   * a URI SAN equal to `identity`; otherwise throws `CsrRefused`. Only the public key is taken from the CSR.
   */
  async sign (csrPem: string, identity: string, options: SignOptions = {}): Promise<IssuedCertificate> {
    this.#checkIdentity(identity)
    const csr = await checkedCsr(csrPem, identity)
    return this.#issue(csr.publicKey, identity, [{ type: 'url', value: identity }], options)
  }

  /**
   * A certificate and a fresh private key for the control plane's own TLS server (port 15012): DNS and IP SANs
   * plus `identity` (its SPIFFE ID) as the one URI SAN; usable as server and client certificate.
   */
  async issueServing (options: ServingOptions): Promise<ServingCertificate> {
    this.#checkIdentity(options.identity)
    const key = await generateWorkloadKey()
    const names: x509.JsonGeneralName[] = [
      ...(options.dnsNames ?? []).map((value): x509.JsonGeneralName => ({ type: 'dns', value })),
      ...(options.ipAddresses ?? []).map((value): x509.JsonGeneralName => ({ type: 'ip', value })),
      { type: 'url', value: options.identity },
    ]
    const issued = await this.#issue(key.cryptoKeyPair.publicKey, options.identity, names, options)
    return Object.freeze({ ...issued, key })
  }

  toJSON (): { trustDomain: string, roots: Public[], issuer: Public } {
    return { trustDomain: this.#trustDomain, ...this.#public }
  }

  [inspect.custom] (): string {
    return `CertificateAuthority ${inspect(this.toJSON(), { depth: 4, breakLength: Infinity })}`
  }

  #checkIdentity (identity: string): void {
    const { trustDomain } = parseSpiffeId(identity)
    if (trustDomain !== this.#trustDomain) {
      throw new Error(`cannot issue for ${identity}: this CA is for trust domain ${this.#trustDomain}`)
    }
  }

  async #issue (publicKey: x509.PublicKeyType, identity: string, names: x509.JsonGeneralName[], options: SignOptions): Promise<IssuedCertificate> {
    const now = (options.now ?? new Date()).getTime()
    const ttlMs = positive(options.ttlMs ?? DEFAULT_LEAF_TTL_MS, 'ttlMs')
    const issuerNotAfter = this.#issuer.notAfter.getTime()
    if (now >= issuerNotAfter) throw new Error(`the issuer certificate expired at ${this.#issuer.notAfter.toISOString()}; the CA must be replaced`)
    const notBefore = new Date(Math.max(now - CLOCK_SKEW_MS, this.#issuer.notBefore.getTime()))
    const notAfter = new Date(Math.min(now + ttlMs, issuerNotAfter))
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: LEAF_SUBJECT,
      issuer: this.#issuer.subjectName,
      notBefore,
      notAfter,
      publicKey,
      signingKey: this.#issuerKey,
      signingAlgorithm: WORKLOAD_KEY_ALGORITHM,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
        await x509.SubjectKeyIdentifierExtension.create(publicKey),
        new x509.AuthorityKeyIdentifierExtension(this.#issuerKeyId),
        // Non-critical: the subject is not empty (RFC 5280 4.2.1.6).
        new x509.SubjectAlternativeNameExtension(names),
      ],
    })
    const certificatePem = pemOf(cert)
    return Object.freeze({
      certificatePem,
      chainPem: Object.freeze([certificatePem, this.#issuerPem]),
      trustAnchorsPem: this.#rootsPem,
      notBefore: cert.notBefore,
      notAfter: cert.notAfter,
      serial: cert.serialNumber.toLowerCase(),
      identity,
    })
  }
}

/**
 * What the root and the issuer both carry: CA:true (`pathLength` 0 for the issuer: it signs leaves only), certificate
 * and CRL signing, their key ids, and the trust domain's SPIFFE ID (X.509-SVID 3.2).
 */
function caExtensions (pathLength: number | undefined, ski: x509.SubjectKeyIdentifierExtension, authorityKeyId: string, san: x509.SubjectAlternativeNameExtension): x509.Extension[] {
  return [
    new x509.BasicConstraintsExtension(true, pathLength, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ski,
    new x509.AuthorityKeyIdentifierExtension(authorityKeyId),
    san,
  ]
}

/** 16 random bytes as a positive DER INTEGER of exactly 16 octets (RFC 5280 4.1.2.2: at most 20; CA/B: 64+ random bits). */
function randomSerial (): string {
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(16))
  bytes[0] = (bytes[0] & 0x7f) | 0x40
  return Buffer.from(bytes).toString('hex')
}

function positive (ms: number, name: string): number {
  if (!Number.isFinite(ms) || ms <= 0) throw new Error(`${name} must be a positive number of milliseconds, got ${ms}`)
  return ms
}

/**
 * The CSR, once it is a PKCS#10 request that signed itself, holds an ECDSA P-256 key and asks for `identity` alone;
 * otherwise throws CsrRefused. The caller proved `identity`: a CSR asking for anything else is refused, not trimmed.
 */
async function checkedCsr (csrPem: string, identity: string): Promise<x509.Pkcs10CertificateRequest> {
  const refuse = (reason: CsrRefusedReason, message: string, requested: readonly string[] = []): never => {
    throw new CsrRefused(reason, message, identity, requested)
  }
  if (typeof csrPem !== 'string' || !/^\s*-----BEGIN CERTIFICATE REQUEST-----/.test(csrPem)) refuse('malformed', 'expected a PEM "CERTIFICATE REQUEST"')
  if (csrPem.length > MAX_CSR_PEM_LENGTH) refuse('malformed', `larger than ${MAX_CSR_PEM_LENGTH} bytes`)
  let csr: x509.Pkcs10CertificateRequest
  let requested: string[]
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem)
    requested = requestedNames(csr)
  } catch (err) {
    return refuse('malformed', `cannot parse the PKCS#10 request: ${(err as Error).message}`)
  }
  const alg = csr.publicKey.algorithm as webcrypto.EcKeyAlgorithm
  if (alg.name !== 'ECDSA' || alg.namedCurve !== 'P-256') {
    refuse('wrong-key', `the key must be ECDSA P-256, the CSR has ${alg.name}${alg.namedCurve === undefined ? '' : ` ${alg.namedCurve}`}`, requested)
  }
  const signed = await csr.verify().catch(() => false)
  if (!signed) refuse('bad-signature', 'its signature does not verify with its own public key (altered, or signed by another key)', requested)
  if (requested.length !== 1 || requested[0] !== identity) {
    const asked = requested.length === 0 ? 'no identity' : requested.join(', ')
    refuse('identity-mismatch', `it asks for ${asked} but the caller proved ${identity}; a workload certificate carries exactly one URI SAN, the proven identity`, requested)
  }
  return csr
}

/** The names a CSR asks for: URI SANs first, then any other SAN (DNS, IP, email...) as `type:value`. */
function requestedNames (csr: x509.Pkcs10CertificateRequest): string[] {
  const exts = csr.extensions.filter((e) => e.type === OID_SUBJECT_ALT_NAME)
  if (exts.length > 1) throw new Error(`it has ${exts.length} subjectAltName extensions`)
  if (exts.length === 0) return []
  const items = new x509.SubjectAlternativeNameExtension(exts[0].rawData).names.items
  return [
    ...items.filter((n) => n.type === 'url').map((n) => n.value),
    ...items.filter((n) => n.type !== 'url').map((n) => `${n.type}:${n.value}`),
  ]
}

/** PEM of a certificate, ending in a newline so that PEMs can be concatenated into a chain or bundle. */
function pemOf (cert: x509.X509Certificate): string {
  const pem = cert.toString('pem')
  return pem.endsWith('\n') ? pem : `${pem}\n`
}

async function fingerprints (certs: readonly x509.X509Certificate[]): Promise<string[]> {
  return Promise.all(certs.map(async (c) => Buffer.from(await c.getThumbprint('SHA-256')).toString('hex')))
}
