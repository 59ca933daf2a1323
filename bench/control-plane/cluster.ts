// bench:control's fake cluster: Services, their Pods and EndpointSlices in the in-test Kubernetes API,
// the model of each Service the bench changes, and which simulated sidecar watches which Service.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { FakeKubeApi, endpointSlice, pod, service, type KubeObject } from '../../test/harness/kube-api.ts'
import { now } from './clock.ts'
import type { Options } from './options.ts'
import type { SidecarSpec } from './protocol.ts'

const INBOUND_PORT = 15006
const TARGET_PORT = 8080

export interface SvcModel {
  readonly index: number
  readonly name: string
  readonly namespace: string
  readonly authority: string
  readonly ready: boolean[]
  readonly ips: string[]
  /** When the bench last changed it (bench clock, ms). */
  lastChange: number
}

const ipOf = (n: number): string => `10.${100 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`
/** An endpoint's key as the discovery API sends it. */
export const keyOf = (ip: string): string => `${ip}:${INBOUND_PORT}/${TARGET_PORT}`

/** The fake API with `o.services` Services of `o.endpoints` ready Pods each (the first is `hot`), and a kubeconfig for it. */
export async function startCluster (o: Options, tmp: string, log: (line: string) => void): Promise<{ api: FakeKubeApi, services: SvcModel[], kubeconfig: string }> {
  const api = await FakeKubeApi.start()
  const t0 = now()
  const services: SvcModel[] = []
  for (let i = 0; i < o.services; i++) {
    const namespace = `ns-${i % o.namespaces}`
    const name = i === 0 ? 'hot' : `svc-${i}`
    const ips = Array.from({ length: o.endpoints }, (_, e) => ipOf(i * o.endpoints + e))
    const svc: SvcModel = { index: i, name, namespace, authority: `${name}.${namespace}:80`, ready: ips.map(() => true), ips, lastChange: -Infinity }
    services.push(svc)
    ips.forEach((ip, e) => api.apply(pod(namespace, `${name}-${e}`, { serviceAccountName: `${name}-sa`, ip, labels: { app: name } })))
    api.apply(service(namespace, name, { ports: [{ name: 'http', port: 80, targetPort: TARGET_PORT }] }))
    api.apply(sliceOf(svc))
  }
  log(`fake Kubernetes API: ${o.services} Services, ${o.services} EndpointSlices, ${o.services * o.endpoints} Pods (${Math.round(now() - t0)} ms)`)
  const kubeconfig = join(tmp, 'kubeconfig.yaml')
  writeFileSync(kubeconfig, api.kubeConfig().exportConfig())
  return { api, services, kubeconfig }
}

/** The Service's EndpointSlice as its model stands. */
export function sliceOf (s: SvcModel): KubeObject {
  return endpointSlice(s.namespace, `${s.name}-abcde`, s.name, {
    ports: [{ name: 'http', port: TARGET_PORT }],
    endpoints: s.ips.map((ip, e) => ({
      addresses: [ip],
      conditions: { ready: s.ready[e], serving: s.ready[e], terminating: false },
      targetRef: { kind: 'Pod', name: `${s.name}-${e}`, namespace: s.namespace },
      nodeName: `node-${e % 3}`,
    })),
  })
}

/** The endpoint keys every watch of this Service should hold. */
export const expectedKeys = (s: SvcModel): string[] => s.ips.filter((_, e) => s.ready[e]).map(keyOf).sort()

/** mulberry32: small, seedable, good enough to pick services. */
export function rng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Who watches what: sidecar i watches the hot service and watches-1 others at random; and each authority's watchers. */
export function assignWatches (o: Options, services: SvcModel[], pick: () => number): { specs: SidecarSpec[], watchersOf: Map<string, number[]> } {
  const specs: SidecarSpec[] = []
  const watchersOf = new Map<string, number[]>()
  for (let id = 0; id < o.sidecars; id++) {
    const chosen = new Set<number>([0])
    while (chosen.size < o.watches) chosen.add(1 + Math.floor(pick() * (o.services - 1)))
    const authorities = [...chosen].map((i) => services[i].authority)
    specs.push({ id, authorities })
    for (const a of authorities) {
      const list = watchersOf.get(a)
      if (list === undefined) watchersOf.set(a, [id])
      else list.push(id)
    }
  }
  return { specs, watchersOf }
}
