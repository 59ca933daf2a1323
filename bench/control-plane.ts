// `npm run bench:control`: the real `remora control` against a fake Kubernetes API, watched by simulated sidecars (HTTP/2): fan-out latency, CPU, RSS.
// Its parts are in control-plane/: options, cluster, control, workers and sim-worker, scenario and phases, ledger, push-metrics, report, profile; main ties them.
import { main, removeTmp } from './control-plane/main.ts'

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`bench:control failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  removeTmp()
  process.exit(1)
})
