// Runs the sidecar as a process: config, logger, signals, exit code.
import { loadProxyConfig } from '../config/proxy-config.ts'
import { createLogger } from '../telemetry/log.ts'
import { startSidecar } from './sidecar.ts'

export async function runProxy (flags: ReadonlyMap<string, string>): Promise<number> {
  const { config } = loadProxyConfig(process.env, flags)
  const log = createLogger(config.logLevel, 'proxy')
  process.on('uncaughtException', (err) => log.error({ err }, 'unexpected error; the proxy keeps serving'))
  const sidecar = await startSidecar(config, log)
  process.once('SIGTERM', () => { void sidecar.shutdown('SIGTERM') })
  process.once('SIGINT', () => { void sidecar.shutdown('SIGINT') })
  await sidecar.stopped
  log.flush()
  return 0
}
