// `remora <role>`: one entry point for every role of the one image (see docs/DESIGN.md).
import { ControlSettings, InitSettings, InjectSettings, ProxySettings, settingsHelp } from './config/env.ts'
import { RemoraError } from './errors.ts'

const ROLES: Record<string, string> = {
  proxy: 'the sidecar (data plane): outbound 15001, inbound 15006, admin 15000',
  control: 'the control plane: endpoint discovery on 15012 from Kubernetes or the mesh file, admin 15014',
  init: 'install the traffic-interception rules with iptables (an init container, as root with NET_ADMIN)',
  inject: 'offline: add the sidecar to Kubernetes YAML (a file or stdin) and write it to stdout',
  injector: 'the mutating admission webhook on 15017, with a certificate from files (cert-manager); remora control serves it too',
  demo: 'a whole mesh on this machine from deploy/local/ (what `npm start` runs)',
  check: 'is the cluster ready for remora (--pre), is remora healthy, are the meshed pods (--proxy): √ ‼ ×',
}

function usage (): string {
  return `remora — a service-mesh sidecar proxy

usage: remora <role> [options]     remora <role> --help

roles:
${Object.entries(ROLES).map(([r, h]) => `  ${r.padEnd(10)} ${h}`).join('\n')}

Options may also be given as environment variables (REMORA_*); options win.
`
}

function proxyUsage (): string {
  return `usage: remora proxy [options]

The sidecar. In a pod, \`remora init\` redirects the app's TCP here (any protocol: HTTP is detected,
the rest is carried as opaque TCP). Without iptables, point the app at the outbound listener as an
HTTP proxy: HTTP_PROXY=http://127.0.0.1:15001; grpc-js honours grpc_proxy/http_proxy (CONNECT). A
CONNECT tunnel may carry HTTP/1.1, HTTP/2, TLS or any TCP protocol.

options (flag, environment variable, meaning):
${settingsHelp(ProxySettings)}

Tracing uses the standard OpenTelemetry variables: OTEL_EXPORTER_OTLP_ENDPOINT (or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) turns it on, e.g. http://jaeger-collector:4318; OTEL_TRACES_SAMPLER,
OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_HEADERS and the rest work as documented (README, Observability).

example:
  remora proxy --mesh-file deploy/local/mesh.yaml --workload web
`
}

function controlUsage (): string {
  return `usage: remora control [options]

The control plane. It watches Kubernetes Services, EndpointSlices and Pods (or reads a mesh file)
and serves each sidecar the services it asks for (docs/discovery-api.md). With a CA (--ca) it signs
each sidecar's certificate for the identity it proves, and every hop is mutual TLS.

options (flag, environment variable, meaning):
${settingsHelp(ControlSettings)}

With a CA and the Kubernetes source it also serves the admission webhook (--injector-addr) that adds
the sidecar to pods created in namespaces labelled remora.dev/inject=enabled, with remora inject's
mesh-wide settings (flag, environment variable, meaning):
${settingsHelp(Object.fromEntries(Object.entries(InjectSettings).filter(([k, v]) => k !== 'namespaceAnnotations' && !Object.values(ControlSettings).some((c) => c.env === v.env))))}

examples:
  remora control                                   # in a cluster, or with KUBECONFIG
  remora control --mesh-file deploy/local/mesh.yaml --discovery-addr 127.0.0.1:15012 --ca dev:.remora/ca
  remora proxy --control-addr 127.0.0.1:15012 --trust-anchors .remora/ca/root.pem --mesh-file deploy/local/mesh.yaml --workload web
`
}

function initUsage (): string {
  return `usage: remora init [options] [--dry-run | --cleanup]

Installs the rules that send the pod's TCP traffic through the sidecar, in the nat table of the
pod's network namespace: inbound to the inbound port, outbound to the outbound port, except the
proxy's own traffic (its UID), loopback, the admin and inbound ports and the skip lists. Chains
REMORA_INBOUND, REMORA_IN_REDIRECT, REMORA_OUTPUT, REMORA_OUT_REDIRECT, jumped to from PREROUTING
and OUTPUT; IPv4 and IPv6, one iptables-restore transaction each. Running it again changes nothing.
Needs root with the NET_ADMIN and NET_RAW capabilities.

  --dry-run     print the rules (both families) and change nothing
  --cleanup     remove remora's jumps and chains (from every backend and family holding them)

options (flag, environment variable, meaning); each but --annotations-file is also the pod annotation
remora.dev/<flag name> (e.g. remora.dev/skip-inbound-ports) in the file named by --annotations-file:
${settingsHelp(InitSettings)}
Precedence: flag, then environment variable, then annotation, then default.

example:
  remora init --skip-outbound-cidrs 10.96.0.1 --skip-inbound-ports 9100 --dry-run
`
}

function injectUsage (): string {
  return `usage: remora inject [--file <path> | -] [options] > injected.yaml

Reads Kubernetes YAML (several documents, kind: List, Deployment, StatefulSet, DaemonSet, ReplicaSet,
ReplicationController, Job, CronJob, Pod) from a file or stdin and writes it to stdout with the sidecar
added to every pod template: remora-init (the interception rules, NET_ADMIN and NET_RAW only) first
among the init containers, then remora-proxy as a native sidecar (Kubernetes 1.29 or later), the app
containers' httpGet and tcpSocket probes sent through the sidecar's admin port (/app-health/...).
Anything else passes through byte for byte; comments and key order are kept. Injecting twice changes
nothing. A workload left alone (remora.dev/inject: disabled, hostNetwork: true, already injected) is
named on stderr; an invalid remora.dev/* annotation stops it, naming the object and the annotation,
and nothing is written (exit 2).

  --file <path>      the YAML to read; - or no --file: stdin

options (flag, environment variable, meaning):
${settingsHelp(InjectSettings)}

Per pod, remora.dev/proxy-image, remora.dev/proxy-cpu-request, remora.dev/proxy-memory-request and
remora.dev/proxy-memory-limit on the pod template override those four settings; every other
remora.dev/<option> of \`remora proxy --help\` and \`remora init --help\` is checked here and read by the
sidecar and remora init at run time. The namespace's remora.dev/inject is the webhook's concern
(remora control or remora injector, at admission); offline, give it with --namespace-annotations.

examples:
  remora inject --file k8s/app.yaml | kubectl apply -f -
  kubectl get deploy web -o yaml | remora inject --otlp-endpoint http://jaeger-collector.remora-system.svc:4318 | kubectl apply -f -
`
}

/** Takes the value-less switches (e.g. --dry-run) out of the arguments; the rest go to parseFlags. */
export function takeSwitches (args: readonly string[], names: readonly string[]): { switches: Set<string>, rest: string[] } {
  const switches = new Set(args.filter((a) => names.includes(a)))
  return { switches, rest: args.filter((a) => !names.includes(a)) }
}

/** `--name value` and `--name=value`; a flag followed by another flag (or nothing) is an error. */
export function parseFlags (args: readonly string[]): Map<string, string> {
  const flags = new Map<string, string>()
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]
    if (!arg.startsWith('--')) throw new RemoraError('REMORA_CONFIG_FLAG', `unexpected argument "${arg}"; options look like --name value`)
    const eq = arg.indexOf('=')
    if (eq > 0) { flags.set(arg.slice(0, eq), arg.slice(eq + 1)); continue }
    const value = args[i + 1]
    if (value === undefined || value.startsWith('--')) throw new RemoraError('REMORA_CONFIG_FLAG', `option ${arg} needs a value`)
    flags.set(arg, value)
    i++
  }
  return flags
}

async function main (argv: readonly string[]): Promise<number> {
  const [role, ...rest] = argv
  if (role === undefined || role === '--help' || role === '-h' || role === 'help') {
    process.stdout.write(usage())
    return role === undefined ? 2 : 0
  }
  const help = rest.includes('--help') || rest.includes('-h')
  switch (role) {
    case 'proxy': {
      if (help) { process.stdout.write(proxyUsage()); return 0 }
      const { runProxy } = await import('./proxy/main.ts')
      return runProxy(parseFlags(rest))
    }
    case 'control': {
      if (help) { process.stdout.write(controlUsage()); return 0 }
      const { runControl } = await import('./control/main.ts')
      return runControl(parseFlags(rest))
    }
    case 'init': {
      if (help) { process.stdout.write(initUsage()); return 0 }
      const { switches, rest: options } = takeSwitches(rest, ['--dry-run', '--cleanup'])
      const { runInit } = await import('./init/main.ts')
      return runInit(parseFlags(options), { dryRun: switches.has('--dry-run'), cleanup: switches.has('--cleanup') })
    }
    case 'inject': {
      if (help) { process.stdout.write(injectUsage()); return 0 }
      const { switches, rest: options } = takeSwitches(rest, ['-'])
      const { runInject } = await import('./inject/main.ts')
      return runInject(parseFlags(options), switches.has('-'))
    }
    case 'injector': {
      const { runInjector, injectorUsage } = await import('./injector/main.ts')
      if (help) { process.stdout.write(injectorUsage()); return 0 }
      return runInjector(parseFlags(rest))
    }
    case 'check': {
      const { runCheck, checkUsage } = await import('./check/main.ts')
      if (help) { process.stdout.write(checkUsage()); return 0 }
      const { switches, rest: options } = takeSwitches(rest, ['--pre', '--proxy'])
      return runCheck(parseFlags(options), { pre: switches.has('--pre'), proxy: switches.has('--proxy') })
    }
    case 'demo': {
      const { runDemo, demoUsage } = await import('./demo/main.ts')
      if (help) { process.stdout.write(demoUsage()); return 0 }
      return runDemo(parseFlags(rest))
    }
    default:
      if (role in ROLES) {
        throw new RemoraError('REMORA_ROLE_UNAVAILABLE', `role "${role}" is not in this version yet; roles that work now: proxy, control, init, inject, injector, demo`)
      }
      throw new RemoraError('REMORA_ROLE_UNKNOWN', `unknown role "${role}"; run remora --help for the list`)
  }
}

main(process.argv.slice(2)).then((code) => {
  if (code !== 0) process.exitCode = code
}, (err: unknown) => {
  if (err instanceof RemoraError) {
    process.stderr.write(`remora: ${err.message} [${err.code}]\n`)
    process.exitCode = 2
  } else {
    process.stderr.write(`remora: unexpected error: ${(err as Error).stack ?? String(err)}\n`)
    process.exitCode = 1
  }
})
