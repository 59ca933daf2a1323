// Runs the sidecar as a process: config, logger, signals, exit code.
import { loadProxyConfig } from '../config/proxy-config.ts'
import { createLogger } from '../telemetry/log.ts'
import { startSidecar } from './sidecar.ts'
import { watchUnexpectedErrors } from '../telemetry/faults.ts'

export async function runProxy (flags: ReadonlyMap<string, string>): Promise<number> {
  const { config } = await loadProxyConfig(process.env, flags)
  const log = createLogger(config.logLevel, 'proxy')
  const sidecar = await startSidecar(config, log)
  const faults = watchUnexpectedErrors(process, { log, count: (outcome) => sidecar.ctx.metrics.unexpectedErrors.inc({ outcome }), drain: (why) => sidecar.shutdown(why) })
  process.once('SIGTERM', () => { void sidecar.shutdown('SIGTERM') })
  process.once('SIGINT', () => { void sidecar.shutdown('SIGINT') })
  await sidecar.stopped
  log.flush()
  return faults.fatal ? 1 : 0
}
