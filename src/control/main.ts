// Runs the control plane as a process: settings, logger, signals, exit code.
import { ControlSettings, readSettings } from '../config/env.ts'
import { createLogger } from '../telemetry/log.ts'
import { startControl } from './plane.ts'
import { watchUnexpectedErrors } from '../telemetry/faults.ts'

export async function runControl (flags: ReadonlyMap<string, string>): Promise<number> {
  const s = readSettings(ControlSettings, process.env, flags)
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
