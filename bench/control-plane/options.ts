// bench:control's options: what the simulated cluster and load look like, and how the bench runs.
import { eachFlag, parseCount, parseWholeSeconds, runFlag, type RunFlags } from '../flags.ts'

export interface Options extends RunFlags {
  sidecars: number
  services: number
  endpoints: number
  watches: number
  namespaces: number
  durationS: number
  rate: number
  burst: number
  workers: number
  concurrency: number
  seed: number
}

function usage (): string {
  return `usage: npm run bench:control -- [options]     (or: npx node bench/control-plane.ts [options])

Starts a fake Kubernetes API in this process with --services Services (one EndpointSlice of
--endpoints ready endpoints each, and their Pods), runs the real \`remora control\` on it as a child
process, and connects --sidecars simulated sidecars to it (real HTTP/2 clients, in --workers child
processes). Each sidecar watches --watches services: one "hot" service every sidecar watches, the
rest at random. Then it changes EndpointSlices through the fake API and times every delta from the
change to each watching sidecar: a steady phase (--rate changes/s on random services plus one hot
change a second, for --duration), then a burst (--burst changes at once, the hot service among them).
Finally every watch's endpoints are checked against the cluster. Prints a table; JSON goes to
bench/results/control-<timestamp>.json. Full size takes about a minute.

options:
  --sidecars 1000     simulated sidecars (one HTTP/2 connection each)
  --services 1000     Kubernetes Services in the cluster
  --endpoints 10      endpoints (pods) per Service
  --watches 10        watches per sidecar (1 hot + the rest random)
  --namespaces 10     namespaces the Services are spread over
  --duration 10s      steady phase
  --rate 20           steady changes per second on random services (plus 1/s on the hot one)
  --burst 200         changes applied at once in the burst phase
  --workers 2         child processes the sidecars are spread over
  --concurrency 25    sidecars connecting at once, per worker
  --seed 1            random choices (watches, changes) are repeatable
  --no-pin            don't pin: by default the control plane gets CPU 1 and everything else CPU 0
  --src               run the control plane from src/ with type stripping instead of the esbuild bundle the image ships
  --cpu-prof          profile the control plane (node --cpu-prof); prints its hot spots, keeps the profile
  --node-options "…"  extra node flags for the control plane, e.g. "--max-semi-space-size=16"
  --keep-tmp          keep the temp dir (kubeconfig, control plane log)
  --no-wait-quiet     don't wait for other processes on the machine to calm down before the idle, steady and burst phases
  --quiet-wait 60s    how long to wait at most for that (other processes under 20 % of a core); the CPU they
                      used anyway is reported per phase ("other")
`
}

export function parseArgs (argv: string[]): Options {
  const o: Options = {
    sidecars: 1000, services: 1000, endpoints: 10, watches: 10, namespaces: 10, durationS: 10, rate: 20, burst: 200,
    workers: 2, concurrency: 25, seed: 1, pin: true, src: false, cpuProf: false, keepTmp: false, waitQuiet: true, quietWaitS: 60, nodeOptions: [],
  }
  eachFlag(argv, usage, (flag, value) => {
    switch (flag) {
      case '--sidecars': o.sidecars = parseCount(flag, value(), 1); break
      case '--services': o.services = parseCount(flag, value(), 2); break
      case '--endpoints': o.endpoints = parseCount(flag, value(), 2); break
      case '--watches': o.watches = parseCount(flag, value(), 1); break
      case '--namespaces': o.namespaces = parseCount(flag, value(), 1); break
      case '--duration': o.durationS = parseWholeSeconds(value()); break
      case '--rate': o.rate = parseCount(flag, value(), 0); break
      case '--burst': o.burst = parseCount(flag, value(), 0); break
      case '--workers': o.workers = parseCount(flag, value(), 1); break
      case '--concurrency': o.concurrency = parseCount(flag, value(), 1); break
      case '--seed': o.seed = parseCount(flag, value(), 0); break
      default: return runFlag(o, flag, value)
    }
    return true
  })
  if (o.watches > o.services) throw new Error(`--watches ${o.watches} is more than --services ${o.services}`)
  o.burst = Math.min(o.burst, o.services)
  return o
}
