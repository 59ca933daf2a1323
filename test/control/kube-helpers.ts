// Helpers of the Kubernetes control-plane tests: a stand-in API with its kubeconfig file, `remora control` processes
// against it, their log lines awaited as they are printed, and the CA they really serve with, read from their port.
import { X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import { FakeKubeApi } from '../harness/kube-api.ts'
import { ControlProcess } from '../harness/control.ts'
import type { Teardown } from '../harness/mesh.ts'
import { START_TIMEOUT_MS } from '../harness/ready.ts'

export const CA_NAMESPACE = 'remora-system'
export const CA_SECRET = 'remora-ca'

export interface Cluster { kube: FakeKubeApi, kubeconfig: string }

/** A fresh stand-in API server and a kubeconfig file pointing at it. */
export async function cluster (t: Teardown): Promise<Cluster> {
  const kube = await FakeKubeApi.start()
  t.teardown(() => kube.close())
  const kubeconfig = join(mkdtempSync(join(tmpdir(), 'remora-kube-ca-')), 'kubeconfig')
  writeFileSync(kubeconfig, kube.kubeConfig().exportConfig())
  return { kube, kubeconfig }
}

/** A `remora control` (Kubernetes source) with REMORA_CA=`ca`, not started; killed at teardown. */
export function controlPlane (t: Teardown, c: Cluster, ca: string, env: NodeJS.ProcessEnv = {}): ControlProcess {
  const cp = new ControlProcess(['--ca', ca], { KUBECONFIG: c.kubeconfig, REMORA_SOURCE: 'kubernetes', ...env })
  t.teardown(() => cp.stop('SIGKILL'))
  return cp
}

export type LogLine = Record<string, unknown> & { msg: string }

const linesOf = (output: string): LogLine[] => output.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as LogLine)

/** The first log line whose msg matches, once printed (checked on every chunk the process writes); fails if it exits first. */
export async function logged (cp: ControlProcess, msg: RegExp, timeoutMs = START_TIMEOUT_MS): Promise<LogLine> {
  const find = (): LogLine | undefined => linesOf(cp.output).find((l) => msg.test(l.msg))
  const found = find()
  if (found !== undefined) return found
  const proc = cp.proc
  return new Promise((resolve, reject) => {
    const done = (err: Error | undefined, line?: LogLine): void => {
      clearTimeout(timer)
      proc.stdout?.off('data', check)
      proc.stderr?.off('data', check)
      proc.off('exit', exited)
      if (err !== undefined) reject(err)
      else resolve(line as LogLine)
    }
    // Registered after the harness's own listener, so cp.output already holds the chunk.
    const check = (): void => { const l = find(); if (l !== undefined) done(undefined, l) }
    const exited = (): void => done(new Error(`remora control exited before logging ${String(msg)}:\n${cp.output}`))
    const timer = setTimeout(() => done(new Error(`remora control did not log ${String(msg)} within ${timeoutMs} ms:\n${cp.output}`)), timeoutMs)
    proc.stdout?.on('data', check)
    proc.stderr?.on('data', check)
    proc.once('exit', exited)
  })
}

/** Every log line so far whose msg matches. */
export function loggedLines (cp: ControlProcess, msg: RegExp): LogLine[] {
  return linesOf(cp.output).filter((l) => msg.test(l.msg))
}

export interface Served {
  /** The discovery port's certificate chains to the given root. */
  readonly authorized: boolean
  readonly authorizationError: string | undefined
  /** The issuer certificate the port presents after its own (DER). */
  readonly issuer: Buffer
}

/** What a sidecar holding `rootPem` sees of the control plane's discovery port (TLS, as to remora-control's names). */
export async function served (cp: ControlProcess, rootPem: string): Promise<Served> {
  const socket = tls.connect({ host: '127.0.0.1', port: cp.discoveryPort, servername: 'localhost', ca: rootPem, rejectUnauthorized: false, ALPNProtocols: ['h2'] })
  try {
    await once(socket, 'secureConnect')
    const leaf = socket.getPeerCertificate(true)
    return { authorized: socket.authorized, authorizationError: socket.authorizationError?.message, issuer: leaf.issuerCertificate.raw }
  } finally {
    socket.destroy()
  }
}

/** The DER of the first certificate in a PEM. */
export const der = (pem: string): Buffer => new X509Certificate(pem).raw
