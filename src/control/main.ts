// Runs the control plane as a process: settings, logger, signals, exit code.
import { ControlSettings, flagOf, readSettings } from '../config/env.ts'
import { createLogger } from '../telemetry/log.ts'
import { startControl } from './plane.ts'
import { watchUnexpectedErrors } from '../telemetry/faults.ts'
import { MESH_WIDE_FLAGS, readMeshWide } from '../injection/mesh-wide.ts'

export async function runControl (flags: ReadonlyMap<string, string>): Promise<number> {
  const controlFlags = new Set(Object.values(ControlSettings).map(flagOf))
  // remora inject's mesh-wide settings are the webhook's; the flags both know (--trust-domain) go to both.
  const s = readSettings(ControlSettings, process.env, new Map([...flags].filter(([f]) => controlFlags.has(f) || !MESH_WIDE_FLAGS.has(f))))
  // Read (and checked) only when the webhook can run: with a CA (and the Kubernetes source, checked in startControl).
  const mesh = s.injectorAddr !== undefined && s.ca.kind !== 'off' ? readMeshWide(process.env, flags) : undefined
  const log = createLogger(s.logLevel, 'control')
  const plane = await startControl({
    source: s.source ?? (s.meshFile !== undefined ? 'file' : 'kubernetes'),
    meshFile: s.meshFile,
    discoveryAddr: s.discoveryAddr,
    adminAddr: s.adminAddr,
    trustDomain: s.trustDomain,
    proxyInboundPort: s.proxyInboundPort,
    ca: s.ca,
    certTtlMs: s.certTtl,
    servingNames: s.servingNames,
    trustAnchorsConfigMap: s.trustAnchorsConfigmap,
    injector: s.injectorAddr === undefined || mesh === undefined ? undefined : { addr: s.injectorAddr, dnsNames: s.injectorNames, mesh },
  }, log)
  const faults = watchUnexpectedErrors(process, { log, count: (outcome) => plane.metrics.unexpectedErrors.inc({ outcome }), drain: (why) => plane.shutdown(why) })
  let failed: unknown
  plane.synced.catch((err: unknown) => { failed = err; void plane.shutdown('the endpoint source failed to start') })
  process.once('SIGTERM', () => { void plane.shutdown('SIGTERM') })
  process.once('SIGINT', () => { void plane.shutdown('SIGINT') })
  await plane.stopped
  log.flush()
  if (failed !== undefined) throw failed
  return faults.fatal ? 1 : 0
}
