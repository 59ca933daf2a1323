// Sidecar side of workload identity: its own ECDSA P-256 key, the CSR it sends, and what a certificate it got says.
import { KeyObject, X509Certificate, createPublicKey, type webcrypto } from 'node:crypto'
import { inspect } from 'node:util'
import { parseSpiffeId } from '../mesh/spiffe-id.ts'
import { spiffeIdOf } from './svid.ts'
import { certificateRequest } from './csr.ts'

/** ECDSA P-256 with SHA-256: the only key and signature the mesh uses for workloads. */
export const WORKLOAD_KEY_ALGORITHM = Object.freeze({ name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' })
/** A workload renews its certificate once this fraction of its lifetime has passed. */
export const RENEW_AT_FRACTION = 0.7

/**
 * A workload's private key: made in the process, never sent anywhere. The key material is held in private
 * fields; JSON.stringify, util.inspect and pino see only the public-key fingerprint.
 */
export class WorkloadKey {
  readonly #pair: webcrypto.CryptoKeyPair
  readonly #privateKey: KeyObject
  readonly #privateKeyPem: string
  readonly #publicKeySha256: string

  private constructor (pair: webcrypto.CryptoKeyPair, privateKey: KeyObject, publicKeySha256: string) {
    this.#pair = pair
    this.#privateKey = privateKey
    this.#privateKeyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
    this.#publicKeySha256 = publicKeySha256
  }

  /** @internal use `generateWorkloadKey()`. */
  static async generate (): Promise<WorkloadKey> {
    // Extractable: OpenSSL (tls.createSecureContext) needs the key as PEM; it still never leaves the process.
    const pair = await globalThis.crypto.subtle.generateKey(WORKLOAD_KEY_ALGORITHM, true, ['sign', 'verify'])
    const spki = await globalThis.crypto.subtle.exportKey('spki', pair.publicKey)
    const digest = await globalThis.crypto.subtle.digest('SHA-256', spki)
    return new WorkloadKey(pair, KeyObject.from(pair.privateKey), Buffer.from(digest).toString('hex'))
  }

  /** The WebCrypto key pair (signs the CSR). */
  get cryptoKeyPair (): webcrypto.CryptoKeyPair { return this.#pair }
  /** The private key as a node KeyObject. */
  get privateKey (): KeyObject { return this.#privateKey }
  /** The private key as PKCS#8 PEM, for `tls.createSecureContext({ key })` (node:tls takes no KeyObject). */
  get privateKeyPem (): string { return this.#privateKeyPem }
  /** The public key as SPKI PEM. */
  get publicKeyPem (): string { return createPublicKey(this.#privateKey).export({ type: 'spki', format: 'pem' }).toString() }
  /** SHA-256 of the DER public key (SPKI), hex: safe to log, names the key. */
  get publicKeySha256 (): string { return this.#publicKeySha256 }

  toJSON (): { algorithm: string, publicKeySha256: string } {
    return { algorithm: 'ECDSA P-256', publicKeySha256: this.#publicKeySha256 }
  }

  [inspect.custom] (): string {
    return `WorkloadKey { ECDSA P-256, public key sha256 ${this.#publicKeySha256} }`
  }
}

/** Makes a fresh ECDSA P-256 key for this workload. */
export async function generateWorkloadKey (): Promise<WorkloadKey> {
  return WorkloadKey.generate()
}

/**
 * A PKCS#10 CSR (PEM) for `identity`, signed with the workload key: empty subject (SPIFFE does not use it) and
 * one URI SAN, the identity. The control plane issues the certificate only if the caller proves that identity.
 */
export async function createCsr (key: WorkloadKey, identity: string): Promise<string> {
  parseSpiffeId(identity)
  return certificateRequest(key.privateKey, identity)
}

/** What a workload certificate says, as a sidecar needs it to use and renew it. */
export interface CertificateInfo {
  readonly notBefore: Date
  readonly notAfter: Date
  /** The SPIFFE ID in the certificate's single URI SAN. */
  readonly identity: string
  /** Serial number, lower-case hex. */
  readonly serial: string
  /** When to renew: `RENEW_AT_FRACTION` (70 %) of the way from notBefore to notAfter. */
  readonly renewAt: Date
}

/** Reads the first certificate of a PEM (a leaf, or a chain that starts with the leaf). Throws if it has no single SPIFFE ID. */
export function certificateInfo (pem: string): CertificateInfo {
  let cert: X509Certificate
  try {
    cert = new X509Certificate(pem)
  } catch (err) {
    throw new Error(`not a PEM certificate: ${(err as Error).message}`, { cause: err })
  }
  const notBefore = cert.validFromDate
  const notAfter = cert.validToDate
  const lifetime = notAfter.getTime() - notBefore.getTime()
  return Object.freeze({
    notBefore,
    notAfter,
    identity: spiffeIdOf(cert),
    serial: cert.serialNumber.toLowerCase(),
    renewAt: new Date(notBefore.getTime() + Math.round(lifetime * RENEW_AT_FRACTION)),
  })
}
