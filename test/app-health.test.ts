// The real sidecar behind strict mTLS: kubelet's plaintext probe to the app port is refused there, so the
// injector rewrites it to GET /app-health/<container>/<kind> on the admin port, which probes the app for it.
// A bad REMORA_APP_PROBES stops the sidecar at start, naming the probe.
import t from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { request } from 'undici'
import { CLI, freePort, writeMesh } from './harness/mesh.ts'
import { startApp } from './harness/apps.ts'
import { startSecureMesh } from './harness/control.ts'

t.test('with strict mTLS, the rewritten probes reach the app through the admin port', async (t) => {
  let healthy = true
  const app = await startApp(t, (req, res) => res.writeHead(req.url === '/ready' && healthy ? 200 : 503).end('app body'))
  const down = await freePort()
  const probes = {
    'web/readiness': { port: app.port, path: '/ready', headers: [{ name: 'x-probe', value: 'kubelet' }] },
    'web/liveness': { port: app.port, tcp: true },
    'web/startup': { port: down, tcp: true },
  }
  const { mesh } = await startSecureMesh(t, {
    workloads: { web: { appPorts: [{ port: app.port, protocol: 'http1' }] } },
    services: [{ name: 'web', port: 80, endpoints: [{ workload: 'web', targetPort: app.port }] }],
  }, { env: { REMORA_APP_PROBES: JSON.stringify(probes) } })
  const web = mesh.sidecar('web')
  const get = async (url: string, method: 'GET' | 'POST' = 'GET'): Promise<{ status: number, text: string }> => {
    const res = await request(url, { method, headers: { 'user-agent': 'kube-probe/1.31' } })
    return { status: res.statusCode, text: await res.body.text() }
  }

  const direct = await get(`http://127.0.0.1:${web.ports.inbound}/ready`)
  t.equal(direct.status, 403, "kubelet's own probe, plaintext to the (redirected) app port, is refused by strict mTLS")
  t.equal(app.requests, 0)

  const ready = await get(`${web.adminUrl}/app-health/web/readiness`)
  t.equal(ready.status, 200)
  t.equal(ready.text, `GET http://127.0.0.1:${app.port}/ready: HTTP 200\n`)
  t.equal(app.requests, 1, 'the app was probed')
  healthy = false
  const notReady = await get(`${web.adminUrl}/app-health/web/readiness`)
  t.equal(notReady.status, 503)
  t.equal(notReady.text, `GET http://127.0.0.1:${app.port}/ready: HTTP 503\n`, "the app's status, not its body")

  t.equal((await get(`${web.adminUrl}/app-health/web/liveness`)).status, 200, 'tcp: the app port accepts')
  const startup = await get(`${web.adminUrl}/app-health/web/startup`)
  t.equal(startup.status, 503, 'tcp: nothing listens')
  t.equal(startup.text, `tcp 127.0.0.1:${down}: ECONNREFUSED\n`)
  t.equal((await get(`${web.adminUrl}/app-health/api/readiness`)).status, 404, 'a probe the pod did not declare')
  t.equal((await get(`${web.adminUrl}/app-health/web/readiness`, 'POST')).status, 405)

  const config = JSON.parse((await get(`${web.adminUrl}/config.json`)).text) as { appProbes: Record<string, unknown> }
  t.same(Object.keys(config.appProbes).sort(), ['web/liveness', 'web/readiness', 'web/startup'], '/config.json shows the declared probes')
})

t.test('a bad REMORA_APP_PROBES stops the sidecar at start, naming the probe', async (t) => {
  const mesh = await writeMesh({ workloads: { web: { appPorts: [8080] } }, services: [] })
  const run = async (value: string): Promise<{ code: number, stderr: string }> => {
    try {
      await promisify(execFile)(process.execPath, [CLI, 'proxy', '--mesh-file', mesh.file, '--workload', 'web'], { env: { ...process.env, REMORA_APP_PROBES: value }, timeout: 60_000 }) // a sidecar that starts is killed, not waited for
      return { code: 0, stderr: '' }
    } catch (err) {
      const e = err as { code: number, stderr: string }
      return { code: e.code, stderr: e.stderr }
    }
  }
  const port = await run('{"web/readiness":{"port":8080,"path":"/ready"},"web/liveness":{"port":"http","path":"/live"}}')
  t.equal(port.code, 2)
  t.equal(port.stderr, 'remora: environment variable REMORA_APP_PROBES: "web/liveness": port must be a number 1-65535, got "http" [REMORA_CONFIG_ENV]\n')
  const kind = await run('{"web/ready":{"port":8080}}')
  t.equal(kind.code, 2)
  t.match(kind.stderr, /REMORA_APP_PROBES: "web\/ready": the probe kind "ready" is not one of liveness, readiness, startup \[REMORA_CONFIG_ENV\]/)
  const field = await run('{"web/startup":{"port":8080,"tcp":true,"timeoutSeconds":1}}')
  t.match(field.stderr, /REMORA_APP_PROBES: "web\/startup": unknown field "timeoutSeconds"/)
})
