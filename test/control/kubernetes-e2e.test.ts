// Black-box, Kubernetes source: a real `remora control` watching the in-test API server feeds real
// sidecars; scaling up and down moves traffic with no request sent to a removed or not-ready
// endpoint after the update, a terminating endpoint finishes what it has, and a control-plane
// restart under load fails nothing.
import t from 'tap'
import http from 'node:http'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Pool } from 'undici'
import { FakeKubeApi, endpointSlice, pod, service, type EndpointSpec } from '../harness/kube-api.ts'
import { ControlProcess } from '../harness/control.ts'
import { SidecarProcess, eventually, freePort, type Teardown } from '../harness/mesh.ts'
import { startApp } from '../harness/apps.ts'
import { START_TIMEOUT_MS } from '../harness/ready.ts'

const NS = 'shop'

interface Pod { name: string, ip: string, app: { port: number, requests: number }, slowArrived: number }

/**
 * One pod: an app on its own port behind its own sidecar, whose inbound listens on the pod IP (127.0.0.x).
 * The app holds each /slow request until `slowUntil` resolves (the test ends them when it is done draining).
 */
async function startPod (t: Teardown, name: string, ip: string, inboundPort: number, control: string, slowUntil: Promise<void>): Promise<Pod> {
  const counts = { slowArrived: 0 }
  const app = await startApp(t, (req: http.IncomingMessage, res: http.ServerResponse) => {
    req.resume()
    if (req.url === '/slow') {
      counts.slowArrived++
      void slowUntil.then(() => res.end(`${name} ${req.url}`))
    } else res.end(`${name} ${req.url}`)
  })
  const admin = await freePort()
  const s = new SidecarProcess(name, { outbound: await freePort(), inbound: inboundPort, admin }, [
    '--inbound-addr', `${ip}:${inboundPort}`, '--app-ports', String(app.port), '--outbound-addr', `127.0.0.1:${await freePort()}`, '--admin-addr', `127.0.0.1:${admin}`, '--control-addr', control,
  ], { ...process.env, REMORA_LOG_LEVEL: 'warn', REMORA_WORKLOAD: name })
  t.teardown(() => s.stop('SIGKILL'))
  await s.start()
  return { name, ip, app, get slowArrived () { return counts.slowArrived } }
}

/** Each pod's app listens on its own port, so each pod gets its own slice (as a named targetPort resolving differently per pod would). */
function slice (p: Pod, conditions: EndpointSpec['conditions'] = { ready: true, serving: true, terminating: false }): ReturnType<typeof endpointSlice> {
  return endpointSlice(NS, `web-${p.name}`, 'web', {
    ports: [{ name: 'http', port: p.app.port }],
    endpoints: [{ addresses: [p.ip], conditions, targetRef: { kind: 'Pod', name: p.name, namespace: NS } }],
  })
}

t.test('scaling in the cluster moves traffic through two sidecars without a request to a gone endpoint', async (t) => {
  const kube = await FakeKubeApi.start()
  t.teardown(() => kube.close())
  const dir = mkdtempSync(join(tmpdir(), 'remora-kube-'))
  const kubeconfig = join(dir, 'kubeconfig')
  writeFileSync(kubeconfig, kube.kubeConfig().exportConfig())
  const inboundPort = await freePort()
  const cp = new ControlProcess(['--proxy-inbound-port', String(inboundPort)], { KUBECONFIG: kubeconfig, REMORA_SOURCE: 'kubernetes' })
  t.teardown(() => cp.stop('SIGKILL'))

  kube.apply(service(NS, 'web', { ports: [{ name: 'http', port: 80, targetPort: 'http' }] }))
  await cp.start()

  let endSlow = (): void => {}
  const slowUntil = new Promise<void>((resolve) => { endSlow = resolve })
  t.teardown(() => endSlow())
  const pods: Pod[] = []
  for (let i = 1; i <= 3; i++) {
    const p = await startPod(t, `web-${i}`, `127.0.0.${10 + i}`, inboundPort, cp.address, slowUntil)
    kube.apply(pod(NS, p.name, { ip: p.ip, serviceAccountName: 'web' }))
    pods.push(p)
  }
  kube.apply(slice(pods[0]))

  const clientAdmin = await freePort()
  const clientOut = await freePort()
  const client = new SidecarProcess('client', { outbound: clientOut, inbound: await freePort(), admin: clientAdmin }, [
    '--outbound-addr', `127.0.0.1:${clientOut}`, '--admin-addr', `127.0.0.1:${clientAdmin}`, '--inbound-addr', `127.0.0.1:${await freePort()}`, '--control-addr', cp.address,
  ], { ...process.env, REMORA_LOG_LEVEL: 'warn' })
  t.teardown(() => client.stop('SIGKILL'))
  await client.start()

  const endpointsSeen = async (): Promise<string[]> => {
    const state = await (await fetch(`${client.adminUrl}/endpoints.json`)).json() as { services: Array<{ endpoints: Array<{ address: { host: string }, identity: string }> }> }
    return (state.services[0]?.endpoints ?? []).map((e) => e.address.host).sort()
  }
  const pool = new Pool(client.proxyUrl, { connections: 8 })
  t.teardown(() => pool.close())
  const failures: string[] = []
  const byPod = new Map<string, number>()
  /** When each request still waiting for its answer was sent. */
  const pending = new Set<{ sentAt: number }>()
  let running = true
  const loop = Promise.all(Array.from({ length: 4 }, async () => {
    while (running) {
      const request = { sentAt: performance.now() }
      pending.add(request)
      try {
        const res = await pool.request({ path: '/', method: 'GET', headers: { host: `web.${NS}` } })
        const body = await res.body.text()
        if (res.statusCode !== 200) failures.push(`${res.statusCode} ${String(res.headers['remora-proxy-error'])}`)
        else byPod.set(body.split(' ')[0], (byPod.get(body.split(' ')[0]) ?? 0) + 1)
      } catch (err) { failures.push((err as Error).message) } finally { pending.delete(request) }
    }
  }))
  t.teardown(async () => { running = false; await loop })
  /**
   * Once the client sidecar's table has an update, waits for the requests sent before that (the ones
   * that may have been routed with the old table) to be answered: any request that reaches a pod
   * afterwards was routed with the new one.
   */
  const routedBefore = async (what: string): Promise<void> => {
    const updated = performance.now()
    await eventually(() => ![...pending].some((r) => r.sentAt <= updated), START_TIMEOUT_MS, `the requests sent before ${what} answered`)
  }

  await eventually(() => (byPod.get('web-1') ?? 0) > 20, START_TIMEOUT_MS, 'traffic reaches web-1')
  const state = await (await fetch(`${client.adminUrl}/endpoints.json`)).json() as { services: Array<{ endpoints: Array<{ identity: string }> }> }
  t.equal(state.services[0].endpoints[0].identity, 'spiffe://cluster.local/ns/shop/sa/web', "the endpoint's identity comes from its pod's service account")

  // Scale up: two more pods become ready.
  kube.apply(slice(pods[1]))
  kube.apply(slice(pods[2]))
  await eventually(async () => (await endpointsSeen()).length === 3, START_TIMEOUT_MS, 'three endpoints in the client sidecar')
  await eventually(() => (byPod.get('web-2') ?? 0) > 10 && (byPod.get('web-3') ?? 0) > 10, START_TIMEOUT_MS, 'traffic spreads to the new pods')

  // web-3 goes not ready: once the client sidecar has the update, web-3's app gets no new request.
  kube.apply(slice(pods[2], { ready: false, serving: false, terminating: false }))
  await eventually(async () => !(await endpointsSeen()).includes('127.0.0.13'), START_TIMEOUT_MS, 'web-3 leaves the table')
  await routedBefore('web-3 left the table') // requests already on their way may land
  const web3 = pods[2].app.requests
  await eventually(() => (byPod.get('web-1') ?? 0) + (byPod.get('web-2') ?? 0) > 200 + web3, START_TIMEOUT_MS, 'more traffic')
  t.equal(pods[2].app.requests, web3, 'no request reached the not-ready pod after the update')

  // Scale down: web-2's slice is deleted.
  kube.remove('EndpointSlice', NS, 'web-web-2')
  await eventually(async () => (await endpointsSeen()).join() === '127.0.0.11', START_TIMEOUT_MS, 'only web-1 left')
  await routedBefore('web-2 left the table')
  const web2 = pods[1].app.requests
  const web1 = byPod.get('web-1') ?? 0
  await eventually(() => (byPod.get('web-1') ?? 0) > web1 + 100, START_TIMEOUT_MS, 'traffic on web-1')
  t.equal(pods[1].app.requests, web2, 'no request reached the removed pod after the update')

  // Terminating: slow requests already on web-1 finish while web-1 drains and web-2 takes new traffic.
  // They are sent while web-1 is the only endpoint, so they are on it (with web-2 in the table the
  // balancer may well put them all on web-2, and the drain would test nothing). web-1's app holds
  // them until web-1 is out of the client sidecar's table, however long the updates take.
  const slowPool = new Pool(client.proxyUrl, { connections: 8 })
  t.teardown(() => slowPool.close())
  const slow = Array.from({ length: 6 }, async () => {
    const res = await slowPool.request({ path: '/slow', method: 'GET', headers: { host: `web.${NS}` } })
    return `${res.statusCode} ${await res.body.text()}`
  })
  await eventually(() => pods[0].slowArrived === 6, START_TIMEOUT_MS, 'the slow requests are in flight on web-1')
  kube.apply(slice(pods[1]))
  await eventually(async () => (await endpointsSeen()).length === 2, START_TIMEOUT_MS, 'web-2 back')
  kube.apply(slice(pods[0], { ready: false, serving: true, terminating: true }))
  await eventually(async () => (await endpointsSeen()).join() === '127.0.0.12', START_TIMEOUT_MS, 'web-1 terminating: out of the table while web-2 is ready')
  endSlow()
  const done = await Promise.all(slow)
  t.ok(done.every((r) => r.startsWith('200 ')), `in-flight requests finished: ${done.join(', ')}`)
  t.ok(done.some((r) => r.includes('web-1 /slow')), 'some were on the terminating pod')

  // The control plane dies and comes back under load: nothing fails.
  await cp.stop('SIGKILL')
  await new Promise((resolve) => setTimeout(resolve, 500))
  kube.apply(slice(pods[0]))
  await cp.start()
  // The sidecar's reconnects back off with full jitter up to 15 s (control-client.ts), and a loaded
  // CI machine took seconds to restart the control plane: the next attempt may come that much later.
  await eventually(async () => (await endpointsSeen()).length === 2, START_TIMEOUT_MS, 'reconciled after the restart')
  running = false
  await loop
  t.same(failures, [], 'zero failed requests')
})
