// Where the control plane's CA comes from: a development CA made on first start, PEM files, a Kubernetes
// Secret, or a Secret the control plane creates once (the first replica to create it wins; the others use it).
// The issuer key is read here and handed to the CA object; it is never served or logged.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import type { CoreV1Api, KubeConfig, V1Secret } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import { RemoraError } from '../errors.ts'
import type { ControlSettings, SettingsOf } from '../config/env.ts'
import { CertificateAuthority } from '../identity/ca.ts'

export const CA_FILES = Object.freeze({ root: 'root.pem', issuer: 'issuer.pem', issuerKey: 'issuer-key.pem' })
/** The label on what the control plane creates (the CA Secret, the trust-anchor ConfigMaps). */
export const MANAGED_BY = Object.freeze({ 'app.kubernetes.io/managed-by': 'remora' })

/** REMORA_CA as read: off, dev:, files:, secret: or secret-or-create:. */
export type ControlCaSetting = SettingsOf<typeof ControlSettings>['ca']

/** `kubeConfig`: the control plane's, when it has one (the Kubernetes source); else the default one is loaded for secret kinds. */
export async function loadCa (setting: Exclude<ControlCaSetting, { kind: 'off' }>, trustDomain: string, log: Logger, kubeConfig?: KubeConfig): Promise<CertificateAuthority> {
  switch (setting.kind) {
    case 'dev': {
      const dir = resolve(setting.dir)
      if (!existsSync(join(dir, CA_FILES.issuerKey))) {
        await createDevCa(dir, trustDomain)
        log.warn({ dir, trustAnchors: join(dir, CA_FILES.root) }, 'created a development CA (for local use only; in a cluster use secret-or-create:, secret: or files:). Give sidecars REMORA_TRUST_ANCHORS=' + join(dir, CA_FILES.root))
      }
      return fromFiles(dir, trustDomain)
    }
    case 'files': return fromFiles(resolve(setting.dir), trustDomain)
    case 'secret': {
      const secret = await readSecret(await coreApi(kubeConfig), setting.namespace, setting.name)
      if (secret === undefined) {
        throw new RemoraError('REMORA_CA', `Secret ${setting.namespace}/${setting.name} not found; create it with ${Object.values(CA_FILES).join(', ')} (REMORA_CA=secret: never creates it; secret-or-create:${setting.namespace}/${setting.name} would)`)
      }
      const ca = await fromSecret(secret, setting.namespace, setting.name, trustDomain)
      log.info({ secret: `${setting.namespace}/${setting.name}`, ca }, `using the CA in Secret ${setting.namespace}/${setting.name}`)
      return ca
    }
    case 'secret-or-create': return fromSecretOrCreate(await coreApi(kubeConfig), setting.namespace, setting.name, trustDomain, log)
  }
}

/** Written to a temporary folder and renamed into place, so two control planes starting at once agree on one CA. */
async function createDevCa (dir: string, trustDomain: string): Promise<void> {
  const ca = await CertificateAuthority.create({ trustDomain })
  const pem = ca.export()
  mkdirSync(dirname(dir), { recursive: true })
  const tmp = mkdtempSync(`${dir}.tmp-`)
  writeFileSync(join(tmp, CA_FILES.root), pem.rootPem)
  writeFileSync(join(tmp, CA_FILES.issuer), pem.issuerPem)
  writeFileSync(join(tmp, CA_FILES.issuerKey), pem.issuerKeyPem, { mode: 0o600 })
  try {
    renameSync(tmp, dir)
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true })
    if (!existsSync(join(dir, CA_FILES.issuerKey))) {
      throw new RemoraError('REMORA_CA', `cannot create the development CA in ${dir}: ${(err as Error).message}`, { cause: err })
    }
  }
}

async function fromFiles (dir: string, trustDomain: string): Promise<CertificateAuthority> {
  const read = (name: string): string => {
    try {
      return readFileSync(join(dir, name), 'utf8')
    } catch (err) {
      throw new RemoraError('REMORA_CA', `cannot read ${join(dir, name)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; REMORA_CA=files:<dir> needs ${Object.values(CA_FILES).join(', ')} in it (dev:<dir> creates them)`, { cause: err })
    }
  }
  return load(trustDomain, read(CA_FILES.root), read(CA_FILES.issuer), read(CA_FILES.issuerKey), {
    root: join(dir, CA_FILES.root), issuer: join(dir, CA_FILES.issuer), issuerKey: join(dir, CA_FILES.issuerKey),
  })
}

async function coreApi (kubeConfig: KubeConfig | undefined): Promise<CoreV1Api> {
  // Loaded only for Kubernetes: the client library is large and local use never needs it.
  const { CoreV1Api, KubeConfig } = await import('@kubernetes/client-node')
  let kc = kubeConfig
  if (kc === undefined) {
    kc = new KubeConfig()
    kc.loadFromDefault()
  }
  return kc.makeApiClient(CoreV1Api)
}

/** The HTTP status of a failed client-node call, if it got that far. */
export function apiStatus (err: unknown): number | undefined {
  const code = (err as { code?: unknown } | undefined)?.code
  return typeof code === 'number' ? code : undefined
}

/** The first line of a client-node error, with the Status message the API server sent when there is one. */
export function apiMessage (err: unknown): string {
  const body = (err as { body?: unknown } | undefined)?.body
  if (typeof body === 'string') {
    try {
      const status = JSON.parse(body) as { message?: unknown }
      if (typeof status.message === 'string') return `${apiStatus(err) ?? ''} ${status.message}`.trim()
    } catch {
      // Not a Status: the error's own message below.
    }
  }
  return (err as Error).message.split('\n')[0]
}

/** The Secret, or undefined when there is none (404); any other failure is an error naming what RBAC needs. */
async function readSecret (api: CoreV1Api, namespace: string, name: string): Promise<V1Secret | undefined> {
  try {
    return await api.readNamespacedSecret({ namespace, name })
  } catch (err) {
    if (apiStatus(err) === 404) return undefined
    throw new RemoraError('REMORA_CA', `cannot read Secret ${namespace}/${name}: ${apiMessage(err)}; the control plane's service account needs get on it`, { cause: err })
  }
}

/**
 * The CA in the Secret, or — when there is none — a new one (a root and an issuer, as dev: makes) stored in it
 * with a create, which the API server lets only one control plane win: a replica whose create gets 409 reads
 * the Secret the winner stored and uses that CA. An existing Secret is never written.
 */
async function fromSecretOrCreate (api: CoreV1Api, namespace: string, name: string, trustDomain: string, log: Logger): Promise<CertificateAuthority> {
  const where = `${namespace}/${name}`
  const existing = await readSecret(api, namespace, name)
  if (existing !== undefined) {
    const ca = await fromSecret(existing, namespace, name, trustDomain)
    const managed = existing.metadata?.labels?.['app.kubernetes.io/managed-by'] === MANAGED_BY['app.kubernetes.io/managed-by']
    log.info({ secret: where, created: false, ca }, `using the CA in Secret ${where}${managed ? ' (created by a remora control plane)' : ''}`)
    return ca
  }
  const created = await CertificateAuthority.create({ trustDomain })
  const pem = created.export()
  const b64 = (s: string): string => Buffer.from(s).toString('base64')
  const body: V1Secret = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace, labels: { ...MANAGED_BY, 'app.kubernetes.io/name': 'remora', 'app.kubernetes.io/component': 'ca' } },
    type: 'Opaque',
    data: { [CA_FILES.root]: b64(pem.rootPem), [CA_FILES.issuer]: b64(pem.issuerPem), [CA_FILES.issuerKey]: b64(pem.issuerKeyPem) },
  }
  try {
    await api.createNamespacedSecret({ namespace, body })
  } catch (err) {
    if (apiStatus(err) !== 409) {
      throw new RemoraError('REMORA_CA', `cannot create Secret ${where} for the new CA: ${apiMessage(err)}; the control plane's service account needs create on secrets in ${namespace} (and the namespace must exist)`, { cause: err })
    }
    // Another control plane created it between our read and our create: its CA is the one, ours is dropped.
    const theirs = await readSecret(api, namespace, name)
    if (theirs === undefined) throw new RemoraError('REMORA_CA', `Secret ${where} already exists (409 Conflict) but cannot be read back; retry`, { cause: err })
    const ca = await fromSecret(theirs, namespace, name, trustDomain)
    log.info({ secret: where, created: false, ca }, `another control plane created Secret ${where} first (409 Conflict on create); using its CA`)
    return ca
  }
  const ca = await load(trustDomain, pem.rootPem, pem.issuerPem, pem.issuerKeyPem, { root: `new ${CA_FILES.root}`, issuer: `new ${CA_FILES.issuer}`, issuerKey: `new ${CA_FILES.issuerKey}` })
  log.info({ secret: where, created: true, ca }, `created the mesh CA (a root and an issuer) and stored it in Secret ${where}`)
  return ca
}

/**
 * The same parts under the names cert-manager gives a Certificate's Secret (type kubernetes.io/tls): with an
 * `isCA` Certificate issued by a CA Issuer holding the root, tls.crt is the issuer, tls.key its key, ca.crt the root.
 */
const TLS_SECRET_KEYS = Object.freeze({ root: 'ca.crt', issuer: 'tls.crt', issuerKey: 'tls.key' })

async function fromSecret (secret: V1Secret, namespace: string, name: string, trustDomain: string): Promise<CertificateAuthority> {
  const data = secret.data ?? {}
  const names = data[CA_FILES.root] === undefined && data[TLS_SECRET_KEYS.root] !== undefined ? TLS_SECRET_KEYS : CA_FILES
  const key = (k: string): string => {
    const v = data[k]
    if (v === undefined) throw new RemoraError('REMORA_CA', `Secret ${namespace}/${name} has no key "${k}"; it needs ${Object.values(CA_FILES).join(', ')} (or cert-manager's ${Object.values(TLS_SECRET_KEYS).join(', ')}); it is never overwritten: fix or delete it`)
    return Buffer.from(v, 'base64').toString('utf8')
  }
  const where = (k: string): string => `Secret ${namespace}/${name} key ${k}`
  return load(trustDomain, key(names.root), key(names.issuer), key(names.issuerKey), { root: where(names.root), issuer: where(names.issuer), issuerKey: where(names.issuerKey) })
}

async function load (trustDomain: string, rootPem: string, issuerPem: string, issuerKeyPem: string, names: { root: string, issuer: string, issuerKey: string }): Promise<CertificateAuthority> {
  try {
    return await CertificateAuthority.load({ rootPem, issuerPem, issuerKeyPem, trustDomain, names })
  } catch (err) {
    throw new RemoraError('REMORA_CA', `the CA does not load: ${(err as Error).message}`, { cause: err })
  }
}
