// `remora injector`: the admission webhook on its own, for clusters whose webhook certificate comes from
// cert-manager (or any other issuer) as files: the certificate and key are re-read when they change, so a renewal
// needs no restart. Without cert-manager, the webhook inside `remora control` (with its CA) does the same job.
import { readFileSync, unwatchFile, watchFile } from 'node:fs'
import type { Logger } from 'pino'
import { flagOf, InjectSettings, LOG_LEVELS, readSettings, settingsHelp, type LogLevel, type Setting } from '../config/env.ts'
import { RemoraError } from '../errors.ts'
import type { HostPort } from '../mesh/host-port.ts'
import { parseHostPort } from '../parse/host-port.ts'
import { MESH_WIDE_FLAGS, readMeshWide } from '../injection/mesh-wide.ts'
import { InjectionWebhook, READY_PATH, WEBHOOK_PATH, type WebhookTls } from '../injection/webhook.ts'
import { createLogger } from '../telemetry/log.ts'
import { watchUnexpectedErrors } from '../telemetry/faults.ts'

/** How often the certificate files are checked for a change (a Secret volume is updated within about a minute). */
export const CERT_POLL_MS = 2000

const text = (raw: string): string => raw.trim()

export const InjectorSettings = Object.freeze({
  addr: { env: 'REMORA_INJECTOR_ADDR', default: '0.0.0.0:15017', help: `The admission webhook (HTTPS): POST ${WEBHOOK_PATH} (AdmissionReview v1), GET ${READY_PATH}.`, parse: parseHostPort } as Setting<HostPort> & { default: string },
  cert: { env: 'REMORA_INJECTOR_CERT', help: "PEM certificate chain the webhook serves (cert-manager's tls.crt), for the injector Service's DNS names; re-read when it changes.", parse: text } as Setting<string>,
  key: { env: 'REMORA_INJECTOR_KEY', help: "Its private key, PEM (cert-manager's tls.key); re-read when it changes.", parse: text } as Setting<string>,
  logLevel: { env: 'REMORA_LOG_LEVEL', default: 'info', help: `Log level: ${LOG_LEVELS.join(', ')}.`, parse: (raw: string) => { const v = raw.trim().toLowerCase(); if (!(LOG_LEVELS as readonly string[]).includes(v)) throw new Error(`expected one of ${LOG_LEVELS.join(', ')}, got "${raw}"`); return v as LogLevel } } as Setting<LogLevel> & { default: string },
})

export function injectorUsage (): string {
  return `usage: remora injector [options]

The mutating admission webhook on its own, serving a certificate from files (cert-manager). It adds the
sidecar to every pod created in a namespace labelled remora.dev/inject=enabled, as \`remora inject\` would
(the same pod); remora.dev/inject: disabled on a pod skips it. In a mesh whose control plane has a CA,
\`remora control\` serves the same webhook itself (REMORA_INJECTOR_ADDR) and this role is not needed.

options (flag, environment variable, meaning):
${settingsHelp(InjectorSettings)}

mesh-wide, as for remora inject (flag, environment variable, meaning):
${settingsHelp(Object.fromEntries(Object.entries(InjectSettings).filter(([k]) => k !== 'namespaceAnnotations')))}

example:
  remora injector --injector-cert /etc/remora/webhook/tls.crt --injector-key /etc/remora/webhook/tls.key
`
}

function readTls (certFile: string, keyFile: string): WebhookTls {
  const read = (file: string, what: string): string => {
    try {
      return readFileSync(file, 'utf8')
    } catch (err) {
      throw new RemoraError('REMORA_CERTIFICATE', `cannot read the webhook's ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err })
    }
  }
  return { cert: read(certFile, 'certificate'), key: read(keyFile, 'key') }
}

/** Re-reads the files when either changes; a pair that does not load is logged and the one in use kept. */
function reloadOnChange (webhook: InjectionWebhook, certFile: string, keyFile: string, current: WebhookTls, log: Logger): () => void {
  let served = current
  const check = (): void => {
    let next: WebhookTls
    try {
      next = readTls(certFile, keyFile)
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'webhook certificate files not readable; keeping the certificate in use')
      return
    }
    if (next.cert === served.cert && next.key === served.key) return
    try {
      webhook.setCredentials(next)
    } catch (err) {
      // Mid-rotation (the certificate written, its key not yet) or a bad pair: tried again on the next change.
      log.warn({ err: (err as Error).message }, 'webhook certificate and key do not load together; keeping the certificate in use')
      return
    }
    served = next
    log.info({ cert: certFile }, 'webhook certificate reloaded')
  }
  for (const f of [certFile, keyFile]) watchFile(f, { interval: CERT_POLL_MS, persistent: false }, check)
  return () => { for (const f of [certFile, keyFile]) unwatchFile(f, check) }
}

export async function runInjector (flags: ReadonlyMap<string, string>): Promise<number> {
  const own = new Set(Object.values(InjectorSettings).map(flagOf))
  for (const f of flags.keys()) {
    if (!own.has(f) && !MESH_WIDE_FLAGS.has(f)) throw new RemoraError('REMORA_CONFIG_FLAG', `unknown option ${f}; see remora injector --help`)
  }
  const s = readSettings(InjectorSettings, process.env, new Map([...flags].filter(([f]) => own.has(f))))
  const mesh = readMeshWide(process.env, new Map([...flags].filter(([f]) => MESH_WIDE_FLAGS.has(f))))
  if (s.cert === undefined || s.key === undefined) {
    throw new RemoraError('REMORA_CONFIG_FLAG', `the webhook needs a certificate: give ${flagOf(InjectorSettings.cert)} and ${flagOf(InjectorSettings.key)} (${InjectorSettings.cert.env}, ${InjectorSettings.key.env}), e.g. the tls.crt and tls.key of a cert-manager Certificate for remora-injector.remora-system.svc`)
  }
  const log = createLogger(s.logLevel, 'injector')
  const tls = readTls(s.cert, s.key)
  let webhook: InjectionWebhook
  try {
    webhook = new InjectionWebhook({ mesh, log, tls })
  } catch (err) {
    throw new RemoraError('REMORA_CERTIFICATE', `the webhook's certificate ${s.cert} and key ${s.key} do not load: ${(err as Error).message}`, { cause: err })
  }
  const address = await webhook.listen(s.addr)
  const stopWatching = reloadOnChange(webhook, s.cert, s.key, tls, log)
  log.info({ address, cert: s.cert, proxyImage: mesh.proxyImage, controlAddr: mesh.controlAddr }, `admission webhook listening on ${address.host}:${address.port} (HTTPS)`)
  let markStopped: () => void = () => {}
  const stopped = new Promise<void>((resolve) => { markStopped = resolve })
  let stopping: Promise<void> | undefined
  const shutdown = (why: string): Promise<void> => {
    stopping ??= (async () => {
      log.info({ why }, 'admission webhook stopping')
      stopWatching()
      await webhook.close()
      markStopped()
    })()
    return stopping
  }
  const faults = watchUnexpectedErrors(process, { log, count: () => {}, drain: shutdown })
  process.once('SIGTERM', () => { void shutdown('SIGTERM') })
  process.once('SIGINT', () => { void shutdown('SIGINT') })
  await stopped
  log.flush()
  return faults.fatal ? 1 : 0
}
