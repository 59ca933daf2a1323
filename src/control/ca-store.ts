// Where the control plane's CA comes from: a development CA made on first start, PEM files, or a
// Kubernetes Secret. The issuer key is read here and handed to the CA object; it is never served or logged.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import type { Logger } from 'pino'
import { RemoraError } from '../errors.ts'
import type { CaSetting } from '../config/env.ts'
import { CertificateAuthority } from '../identity/ca.ts'

export const CA_FILES = Object.freeze({ root: 'root.pem', issuer: 'issuer.pem', issuerKey: 'issuer-key.pem' })

export async function loadCa (setting: Exclude<CaSetting, { kind: 'off' }>, trustDomain: string, log: Logger): Promise<CertificateAuthority> {
  switch (setting.kind) {
    case 'dev': {
      const dir = resolve(setting.dir)
      if (!existsSync(join(dir, CA_FILES.issuerKey))) {
        await createDevCa(dir, trustDomain)
        log.warn({ dir, trustAnchors: join(dir, CA_FILES.root) }, 'created a development CA (for local use only; in production use files: or secret:). Give sidecars REMORA_TRUST_ANCHORS=' + join(dir, CA_FILES.root))
      }
      return fromFiles(dir, trustDomain)
    }
    case 'files': return fromFiles(resolve(setting.dir), trustDomain)
    case 'secret': return fromSecret(setting.namespace, setting.name, trustDomain)
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

async function fromSecret (namespace: string, name: string, trustDomain: string): Promise<CertificateAuthority> {
  const { CoreV1Api, KubeConfig } = await import('@kubernetes/client-node')
  const kc = new KubeConfig()
  kc.loadFromDefault()
  let data: Record<string, string>
  try {
    const secret = await kc.makeApiClient(CoreV1Api).readNamespacedSecret({ namespace, name })
    data = secret.data ?? {}
  } catch (err) {
    throw new RemoraError('REMORA_CA', `cannot read Secret ${namespace}/${name}: ${(err as Error).message.split('\n')[0]}; the control plane's service account needs get on it`, { cause: err })
  }
  const key = (k: string): string => {
    const v = data[k]
    if (v === undefined) throw new RemoraError('REMORA_CA', `Secret ${namespace}/${name} has no key "${k}"; it needs ${Object.values(CA_FILES).join(', ')}`)
    return Buffer.from(v, 'base64').toString('utf8')
  }
  const where = (k: string): string => `Secret ${namespace}/${name} key ${k}`
  return load(trustDomain, key(CA_FILES.root), key(CA_FILES.issuer), key(CA_FILES.issuerKey), { root: where(CA_FILES.root), issuer: where(CA_FILES.issuer), issuerKey: where(CA_FILES.issuerKey) })
}

async function load (trustDomain: string, rootPem: string, issuerPem: string, issuerKeyPem: string, names: { root: string, issuer: string, issuerKey: string }): Promise<CertificateAuthority> {
  try {
    return await CertificateAuthority.load({ rootPem, issuerPem, issuerKeyPem, trustDomain, names })
  } catch (err) {
    throw new RemoraError('REMORA_CA', `the CA does not load: ${(err as Error).message}`, { cause: err })
  }
}
