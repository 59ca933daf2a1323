// `remora init`: reads the settings, then installs (or with --cleanup removes, or with --dry-run prints) the interception rules.
import { flagOf, InitSettings, podAnnotations, readSettings, type Environment, type SettingsOf } from '../config/env.ts'
import { RemoraError } from '../errors.ts'
import { createLogger, type Logger } from '../telemetry/log.ts'
import { applyText, cleanupText, FAMILIES, parseNat, type Family, type InterceptOptions } from './rules.ts'
import { BACKENDS, binaryOf, detectBackend, ipv6Unusable, noIptables, restore, save } from './iptables.ts'

export interface InitMode { readonly dryRun: boolean, readonly cleanup: boolean }

type Settings = SettingsOf<typeof InitSettings>

const optionsOf = (s: Settings): InterceptOptions => ({
  proxyUid: s.proxyUid, proxyGid: s.proxyGid, inboundPort: s.inboundPort, outboundPort: s.outboundPort, adminPort: s.adminPort,
  skipInboundPorts: s.skipInboundPorts ?? [], skipOutboundPorts: s.skipOutboundPorts ?? [], skipOutboundCidrs: s.skipOutboundCidrs ?? [],
})

/** Settings from flags, then REMORA_* variables, then the pod's remora.dev/* annotations, then defaults. */
export function readInitSettings (env: Environment, flags: ReadonlyMap<string, string>): Settings {
  return readSettings(InitSettings, env, flags, podAnnotations(InitSettings.annotationsFile, env, flags))
}

export function dryRunText (s: Settings): string {
  const o = optionsOf(s)
  const section = (family: Family, how: string): string =>
    `# ${family === 'ipv4' ? 'IPv4: iptables' : 'IPv6: ip6tables'}-restore --noflush${how}\n${applyText(o, family).text}`
  return [
    `# remora init --dry-run: nothing is changed. Backend: ${s.iptables}. On a real run, jumps already present are not added again.\n`,
    section('ipv4', ''),
    s.ipv6 === 'off' ? '# IPv6: off\n' : section('ipv6', s.ipv6 === 'auto' ? ' (only when the kernel has IPv6 and ip6tables nat works)' : ''),
  ].join('')
}

async function install (s: Settings, log: Logger): Promise<void> {
  const { backend, why } = s.iptables === 'auto' ? await detectBackend() : { backend: s.iptables, why: `chosen by ${flagOf(InitSettings.iptables)} / ${InitSettings.iptables.env}` }
  log.info({ backend, why }, `iptables backend: ${backend}`)
  const apply = async (family: Family): Promise<void> => {
    const { text, jumpsAdded } = applyText(optionsOf(s), family, parseNat(await save(backend, family, 'nat')))
    await restore(backend, family, text)
    log.info({ backend, family, jumpsAdded, rules: text.trim().split('\n') }, `${family} interception rules installed`)
  }
  await apply('ipv4')
  const skip6 = s.ipv6 === 'off' ? `${flagOf(InitSettings.ipv6)} is off` : s.ipv6 === 'auto' ? await ipv6Unusable(backend) : undefined
  if (skip6 === undefined) await apply('ipv6')
  else log.info({ reason: skip6 }, 'IPv6 rules skipped')
}

async function remove (log: Logger): Promise<void> {
  const missing: string[] = []
  let checked = 0
  let removed = 0
  for (const backend of BACKENDS) {
    for (const family of FAMILIES) {
      let now: string
      try {
        now = await save(backend, family)
      } catch (err) {
        const e = err as RemoraError
        if (e.code === 'REMORA_INIT_PERMISSION') throw e
        if (e.code === 'REMORA_INIT_IPTABLES_MISSING') missing.push(binaryOf(backend, family, 'save'))
        else log.info({ backend, family, reason: e.message }, 'not checked')
        continue
      }
      checked++
      const text = cleanupText(parseNat(now))
      if (text === undefined) continue
      await restore(backend, family, text)
      removed++
      log.info({ backend, family, rules: text.trim().split('\n') }, `${family} interception rules removed`)
    }
  }
  if (checked === 0 && missing.length > 0) throw noIptables(missing)
  if (removed === 0) log.info('no remora rules found: nothing to remove')
}

export async function runInit (flags: ReadonlyMap<string, string>, mode: InitMode, env: Environment = process.env): Promise<number> {
  if (mode.dryRun && mode.cleanup) throw new RemoraError('REMORA_CONFIG_FLAG', '--dry-run and --cleanup do not go together: --dry-run prints the rules remora init would install')
  const s = readInitSettings(env, flags)
  if (mode.dryRun) { process.stdout.write(dryRunText(s)); return 0 }
  const log = createLogger('info', 'init')
  try {
    await (mode.cleanup ? remove(log) : install(s, log))
  } finally {
    log.flush()
  }
  return 0
}
