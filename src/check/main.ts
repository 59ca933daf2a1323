// `remora check`: what `linkerd check` does for Linkerd. --pre before an install, by default after it, --proxy
// for the meshed pods too; a line per check, exit 0 when nothing failed (warnings allowed), 1 when something did.
import { readFileSync } from 'node:fs'
import { CheckSettings, readSettings, settingsHelp } from '../config/env.ts'
import { RemoraError } from '../errors.ts'
import { checkApi, checkInstallPermissions } from './cluster.ts'
import { checkInstall, INSTALL_DEFAULTS } from './install.ts'
import { KubeClient, loadKubeConfig } from './kube.ts'
import { checkProxies } from './proxy.ts'
import { fail, formatJson, formatText, summarize, type CheckResult } from './result.ts'

export function checkUsage (): string {
  return `usage: remora check [--pre | --proxy [--namespace <ns> [--pod <name>]]] [options]

Checks a cluster the way the API server lets one see it, a line per check: √ passed, ‼ warning,
× failed with what to do. Exit 0 when nothing failed (warnings allowed), 1 when something did,
2 when the options are wrong.

  (default)   after an install: the API server and its version; remora-system, the remora-control
              Deployment and its pods Ready; the CA Secret is a valid CA and when its root and
              issuer expire (‼ within 30 days); the MutatingWebhookConfiguration remora-injector,
              its caBundle against the CA's root, its Service with ready endpoints
  --pre       before an install: the API server answers, is Kubernetes 1.29 or later (native
              sidecars), and you may create every kind of object \`kubectl apply -k k8s/\` creates
  --proxy     also every running pod with the remora-proxy sidecar: started and ready, its image tag
              against this remora's version, its certificate's expiry (from its /metrics, through
              the API server's pods/proxy)

Not checked from outside the cluster: the injector's HTTPS endpoint (give --webhook-url with a
port-forward to verify its certificate), and a sidecar's /config.json (loopback only).

options (flag, environment variable, meaning):
${settingsHelp(CheckSettings)}

examples:
  remora check --pre
  remora check
  remora check --proxy --namespace shop --output json
`
}

export interface CheckModes { readonly pre: boolean, readonly proxy: boolean }

/** This remora's version: the package.json beside the sources (src/ or dist/, or a bundle's folder), if found. */
export function remoraVersion (): string | undefined {
  for (const up of ['../../package.json', '../package.json', './package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(up, import.meta.url), 'utf8')) as { name?: unknown, version?: unknown }
      if (pkg.name === 'remora' && typeof pkg.version === 'string') return pkg.version
    } catch {
      // not there: the next folder up
    }
  }
  return undefined
}

export async function runChecks (flags: ReadonlyMap<string, string>, modes: CheckModes, env: NodeJS.ProcessEnv = process.env): Promise<CheckResult[]> {
  const s = readSettings(CheckSettings, env, flags)
  if (modes.pre && modes.proxy) throw new RemoraError('REMORA_CHECK_USAGE', '--pre checks a cluster before remora is installed; --proxy checks meshed pods after: give one of them')
  if (s.pod !== undefined && (!modes.proxy || s.namespace === undefined)) throw new RemoraError('REMORA_CHECK_USAGE', '--pod needs --proxy and --namespace: remora check --proxy --namespace <ns> --pod <name>')
  if (s.namespace !== undefined && !modes.proxy) throw new RemoraError('REMORA_CHECK_USAGE', '--namespace says which pods --proxy checks; add --proxy (the install is in --control-namespace)')
  const loaded = loadKubeConfig(s.kubeconfig, env)
  if ('error' in loaded) return [fail('kubernetes-api', 'the API server answers', loaded.error)]
  const kube = new KubeClient(loaded.kc, loaded.server, s.timeout)
  const api = await checkApi(kube)
  if (!api.reachable) return api.results
  const results = [...api.results]
  if (modes.pre) {
    results.push(...await checkInstallPermissions(kube, s.controlNamespace))
    return results
  }
  const now = new Date()
  results.push(...await checkInstall(kube, {
    namespace: s.controlNamespace,
    deployment: INSTALL_DEFAULTS.deployment,
    caSecret: s.caSecret,
    trustDomain: s.trustDomain,
    webhook: INSTALL_DEFAULTS.webhook,
    webhookUrl: s.webhookUrl,
    now,
  }))
  if (modes.proxy) results.push(...await checkProxies(kube, { namespace: s.namespace, pod: s.pod, version: remoraVersion(), now }))
  return results
}

export async function runCheck (flags: ReadonlyMap<string, string>, modes: CheckModes): Promise<number> {
  const output = readSettings(CheckSettings, process.env, flags).output
  const results = await runChecks(flags, modes)
  process.stdout.write(output === 'json' ? formatJson(results) : formatText(results))
  return summarize(results).fail > 0 ? 1 : 0
}
