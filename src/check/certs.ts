// The certificate facts remora check reports: how long a certificate has left, whether a webhook's caBundle is the
// mesh's root, and whether a proxy image matches this remora. Pure functions of what was read, so tests can pin the time.
import { X509Certificate } from 'node:crypto'
import type { Outcome } from './result.ts'

export const DAY_MS = 24 * 3600 * 1000
/** The CA's root and issuer: warn this long before they expire (rotating them takes planning). */
export const CA_WARN_WITHIN_MS = 30 * DAY_MS
/**
 * A sidecar's certificate: warn when less than this is left. It lives 24 h by default and is renewed at 70 %, so a
 * healthy one always has about 7 h left; under 30 minutes means renewal has been failing for hours.
 */
export const PROXY_CERT_WARN_WITHIN_MS = 30 * 60 * 1000

export interface Expiry { readonly outcome: Outcome, readonly message: string }

const day = (d: Date): string => d.toISOString().replace(/\.\d+Z$/, 'Z')

/** A span of time as a person says it: 45 days, 5 hours, 12 minutes. */
export function humanSpan (ms: number): string {
  const abs = Math.abs(ms)
  const [n, unit] = abs >= 2 * DAY_MS ? [Math.floor(abs / DAY_MS), 'day'] : abs >= 2 * 3600_000 ? [Math.floor(abs / 3600_000), 'hour'] : [Math.max(0, Math.floor(abs / 60_000)), 'minute']
  return `${n} ${unit}${n === 1 ? '' : 's'}`
}

/**
 * Expired or not yet valid: fail; expiring within `warnWithinMs`: warn; else ok. `what` names the certificate and
 * `fix` says what to do when it is (nearly) expired.
 */
export function expiryOf (what: string, notBefore: Date, notAfter: Date, now: Date, warnWithinMs: number, fix: string): Expiry {
  const left = notAfter.getTime() - now.getTime()
  if (now < notBefore) return { outcome: 'fail', message: `${what} is not valid until ${day(notBefore)} (is the clock of this machine or of the cluster wrong?)` }
  if (left <= 0) return { outcome: 'fail', message: `${what} expired ${humanSpan(left)} ago (${day(notAfter)}); ${fix}` }
  if (left <= warnWithinMs) return { outcome: 'warn', message: `${what} expires in ${humanSpan(left)} (${day(notAfter)}); ${fix}` }
  return { outcome: 'ok', message: `${what} expires ${day(notAfter)} (in ${humanSpan(left)})` }
}

/** Every certificate of a PEM text (none if it holds none or does not parse). */
export function certificatesOf (pem: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
  const certs: X509Certificate[] = []
  for (const b of blocks) {
    try { certs.push(new X509Certificate(b)) } catch { /* not a certificate: left out, so it matches nothing */ }
  }
  return certs
}

/** Whether a caBundle (PEM) holds every root of the mesh's CA: what the API server needs to trust the injector. */
export function bundleHoldsRoots (bundlePem: string, rootsPem: string): boolean {
  const bundle = new Set(certificatesOf(bundlePem).map((c) => c.fingerprint256))
  const roots = certificatesOf(rootsPem)
  return roots.length > 0 && roots.every((r) => bundle.has(r.fingerprint256))
}

/**
 * The tag of an image reference (`ghcr.io/remora-mesh/remora:0.1.0` → `0.1.0`); undefined when it has none (then
 * `latest`) or is pinned by digest only. A registry's port (`host:5000/remora`) is not a tag.
 */
export function imageTag (image: string): string | undefined {
  const noDigest = image.split('@')[0]
  const last = noDigest.slice(noDigest.lastIndexOf('/') + 1)
  const colon = last.lastIndexOf(':')
  return colon < 0 ? undefined : last.slice(colon + 1)
}

/** The tag compared with this remora's version: `v0.1.0` and `0.1.0` are the same. */
export function sameVersion (tag: string, version: string): boolean {
  return tag.replace(/^v/, '') === version.replace(/^v/, '')
}

/**
 * The Kubernetes version in /version: gitVersion (`v1.29.3-gke.1`) first, else major and minor (which some
 * providers write `29+`). Undefined when neither reads as numbers.
 */
export function kubernetesVersion (info: { gitVersion?: unknown, major?: unknown, minor?: unknown }): { major: number, minor: number } | undefined {
  const m = typeof info.gitVersion === 'string' ? /^v?(\d+)\.(\d+)/.exec(info.gitVersion) : null
  if (m !== null) return { major: Number(m[1]), minor: Number(m[2]) }
  const major = typeof info.major === 'string' ? /^(\d+)/.exec(info.major) : null
  const minor = typeof info.minor === 'string' ? /^(\d+)/.exec(info.minor) : null
  if (major === null || minor === null) return undefined
  return { major: Number(major[1]), minor: Number(minor[1]) }
}
