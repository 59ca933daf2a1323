// Runs the control plane as a process: settings, logger, signals, exit code.
import { ControlSettings, readSettings, type CaSetting, type ControlSource, type HostPort } from '../config/env.ts'
import { createLogger } from '../telemetry/log.ts'
import { startControl } from './plane.ts'
import { watchUnexpectedErrors } from '../telemetry/faults.ts'

export async function runControl (flags: ReadonlyMap<string, string>): Promise<number> {
  const s = readSettings(ControlSettings, process.env, flags)
  const log = createLogger(s.logLevel ?? 'info', 'control')
  const plane = await startControl({
    source: s.source ?? (s.meshFile !== undefined ? 'file' : 'kubernetes') as ControlSource,
    meshFile: s.meshFile,
    discoveryAddr: s.discoveryAddr as HostPort,
    adminAddr: s.adminAddr as HostPort,
    trustDomain: s.trustDomain as string,
    proxyInboundPort: s.proxyInboundPort as number,
    ca: s.ca as CaSetting,
    certTtlMs: s.certTtl as number,
    servingNames: s.servingNames as readonly string[],
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
