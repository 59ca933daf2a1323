// Black-box, `remora injector`: the webhook on its own with certificate files (as cert-manager writes them), the
// same answers as inside the control plane; a renewed certificate (files replaced) is served without a restart.
import t from 'tap'
import { spawn } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { mkdtempSync, renameSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import { CertificateAuthority } from '../../src/identity/ca.ts'
import { readMeshWide } from '../../src/injection/mesh-wide.ts'
import { applyPatch } from '../../src/injection/patch.ts'
import { CLI, stopProcess } from '../harness/mesh.ts'
import { START_TIMEOUT_MS } from '../harness/ready.ts'
import { injectedByRemoraInject, patchOf, post, replicaSetPod, review, SERVICE_NAME } from './review-helpers.ts'

t.test('remora injector serves cert-manager files and reloads them when they change', async (t) => {
  const ca = await CertificateAuthority.create({ trustDomain: 'cluster.local' })
  const root = ca.trustAnchorsPem.join('')
  const dir = mkdtempSync(join(tmpdir(), 'remora-injector-'))
  const [certFile, keyFile] = [join(dir, 'tls.crt'), join(dir, 'tls.key')]
  /** Issues a certificate and writes it as a Secret volume update does: new files renamed into place. */
  const writeCert = async (): Promise<string> => {
    const c = await ca.issueServing({ dnsNames: [SERVICE_NAME], identity: 'spiffe://cluster.local/ns/remora-system/sa/remora-injector', ttlMs: 3600_000 })
    writeFileSync(`${keyFile}.new`, c.key.privateKeyPem)
    writeFileSync(`${certFile}.new`, c.chainPem.join(''))
    renameSync(`${keyFile}.new`, keyFile)
    renameSync(`${certFile}.new`, certFile)
    return c.serial
  }
  const firstSerial = await writeCert()
  const env = { REMORA_PROXY_IMAGE: 'registry.local/remora:8', REMORA_OTLP_ENDPOINT: 'http://otel.example:4318' }
  const proc = spawn(process.execPath, [CLI, 'injector', '--injector-addr', '127.0.0.1:0', '--injector-cert', certFile, '--injector-key', keyFile, '--trust-domain', 'cluster.local'], {
    env: { ...process.env, REMORA_LOG_LEVEL: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.teardown(() => stopProcess(proc, 'SIGKILL'))
  let output = ''
  const logged = (msg: RegExp): Promise<Record<string, unknown>> => new Promise((resolve, reject) => {
    const find = (): Record<string, unknown> | undefined => output.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => msg.test(String(l.msg)))
    const check = (): void => { const l = find(); if (l !== undefined) done(undefined, l) }
    const exited = (): void => done(new Error(`remora injector exited:\n${output}`))
    const timer = setTimeout(() => done(new Error(`remora injector did not log ${String(msg)}:\n${output}`)), START_TIMEOUT_MS)
    const done = (err: Error | undefined, line?: Record<string, unknown>): void => {
      clearTimeout(timer)
      proc.stdout?.off('data', check)
      proc.off('exit', exited)
      if (err === undefined) resolve(line as Record<string, unknown>)
      else reject(err)
    }
    proc.stdout?.on('data', check)
    proc.once('exit', exited)
    check()
  })
  proc.stdout?.on('data', (c: Buffer) => { output += c.toString() })
  proc.stderr?.on('data', (c: Buffer) => { output += c.toString() })

  const port = ((await logged(/^admission webhook listening/)).address as { port: number }).port
  const servedSerial = async (): Promise<string> => new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: SERVICE_NAME, ca: root }, () => {
      resolve(new X509Certificate(s.getPeerX509Certificate()?.raw ?? Buffer.alloc(0)).serialNumber.toLowerCase())
      s.end()
    })
    s.on('error', reject)
  })
  t.equal(await servedSerial(), firstSerial, 'serves the certificate in the files, valid for the Service name')

  const pod = replicaSetPod()
  const a = await post(port, root, JSON.stringify(review('uid-1', pod)))
  t.equal(a.json?.response?.uid, 'uid-1')
  t.same((applyPatch(pod, patchOf(a)) as { spec: unknown }).spec, injectedByRemoraInject(readMeshWide(env, new Map())), 'the pod remora inject writes')
  t.equal((await post(port, root, '[')).status, 400)

  const next = await writeCert()
  await logged(/^webhook certificate reloaded/)
  t.equal(await servedSerial(), next, 'the renewed certificate, without a restart')
  t.equal((await post(port, root, JSON.stringify(review('uid-2', pod)))).json?.response?.allowed, true)
  proc.kill('SIGTERM')
  const [code] = await new Promise<[number | null]>((resolve) => proc.once('exit', (c) => resolve([c])))
  t.equal(code, 0, 'stops cleanly on SIGTERM')
})
