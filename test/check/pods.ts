// Meshed pods for the remora check tests: a Pod put through the real `remora inject`, then given the status kubelet
// would report for it (the sidecar ready, or crash-looping).
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { parse } from 'yaml'
import type { KubeObject } from '../harness/kube-api.ts'
import { CLI } from '../harness/mesh.ts'

const POD = (ns: string, name: string): string => `apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  namespace: ${ns}
  labels: { app: web }
spec:
  containers:
    - name: web
      image: nginx:1.27
      ports: [{ containerPort: 8080 }]
`

/** `remora inject` on a one-container Pod, then the status of a running pod: its sidecar ready, or crash-looping. */
export async function injectedPod (ns: string, name: string, opts: { image?: string } = {}): Promise<{ ready: KubeObject, crashing: KubeObject }> {
  const args = [CLI, 'inject', ...(opts.image === undefined ? [] : ['--proxy-image', opts.image])]
  const child = promisify(execFile)(process.execPath, args, { env: { ...process.env } })
  child.child.stdin?.end(POD(ns, name))
  const { stdout } = await child
  const pod = parse(stdout) as KubeObject & { spec: { initContainers?: Array<{ name: string, image: string, restartPolicy?: string }>, containers: Array<{ name: string, image: string }> } }
  const init = pod.spec.initContainers ?? []
  const running = (c: { name: string, image: string }, ready: boolean): Record<string, unknown> => ({ name: c.name, image: c.image, imageID: '', ready, started: ready, restartCount: ready ? 0 : 5, state: ready ? { running: { startedAt: '2025-01-01T00:00:00Z' } } : { waiting: { reason: 'CrashLoopBackOff', message: 'back-off 2m40s' } } })
  const statusOf = (ready: boolean): Record<string, unknown> => ({
    phase: ready ? 'Running' : 'Pending',
    podIP: '10.244.1.7',
    podIPs: [{ ip: '10.244.1.7' }],
    conditions: [{ type: 'Ready', status: ready ? 'True' : 'False', lastProbeTime: null, lastTransitionTime: '2025-01-01T00:00:00Z' }],
    initContainerStatuses: init.map((c) => c.restartPolicy === 'Always'
      ? running(c, ready)
      : { name: c.name, image: c.image, imageID: '', ready: true, started: false, restartCount: 0, state: { terminated: { exitCode: 0, reason: 'Completed', startedAt: '2025-01-01T00:00:00Z', finishedAt: '2025-01-01T00:00:01Z' } } }),
    containerStatuses: pod.spec.containers.map((c) => ready ? running(c, true) : { name: c.name, image: c.image, imageID: '', ready: false, started: false, restartCount: 0, state: { waiting: { reason: 'PodInitializing' } } }),
  })
  return { ready: { ...pod, status: statusOf(true) }, crashing: { ...pod, status: statusOf(false) } }
}
