// The admin server: /live /ready /metrics and the app's rewritten probes (/app-health) for everyone;
// config, endpoints and shutdown from loopback only.
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type { Registry } from 'prom-client'

/** What the admin server shows: the metrics, and (to loopback) the config and endpoint table in effect. */
export interface AdminSources {
  readonly registry: Registry
  readonly config: unknown
  readonly endpoints: () => unknown
}

export interface AdminHooks {
  readonly ready: () => { ready: boolean, why: string }
  readonly shutdown: () => void
  /**
   * Runs the app's probe `<container>/<kind>` (REMORA_APP_PROBES) for kubelet, passing on its User-Agent;
   * undefined when the pod declared no such probe.
   */
  readonly appHealth: (name: string, userAgent: string | undefined) => Promise<{ healthy: boolean, why: string }> | undefined
}

const APP_HEALTH = '/app-health/'

export function isLoopback (address: string | undefined): boolean {
  if (address === undefined) return false
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.')
}

export function createAdminServer (sources: AdminSources, hooks: AdminHooks): http.Server {
  return http.createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0]
    const send = (status: number, body: string, type = 'text/plain; charset=utf-8'): void => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' }).end(body)
    }
    const json = (value: unknown): void => send(200, JSON.stringify(value, null, 2) + '\n', 'application/json')
    const method = req.method ?? 'GET'
    if (method === 'GET' && path === '/live') return send(200, 'live\n')
    if (method === 'GET' && path === '/ready') {
      const r = hooks.ready()
      return send(r.ready ? 200 : 503, `${r.why}\n`)
    }
    if (method === 'GET' && path === '/metrics') {
      sources.registry.metrics().then((text) => send(200, text, sources.registry.contentType), (err: Error) => send(500, err.message))
      return
    }
    // kubelet is not loopback: served to anyone, but only the probes the pod declared, only GET, no body
    // passed either way; the answer is one line (the app's status or why it failed), as kubelet judged it.
    if (path.startsWith(APP_HEALTH)) {
      if (method !== 'GET') {
        res.setHeader('allow', 'GET')
        return send(405, 'use GET /app-health/<container>/<liveness|readiness|startup>\n')
      }
      const name = path.slice(APP_HEALTH.length)
      const probe = hooks.appHealth(name, req.headers['user-agent'])
      if (probe === undefined) return send(404, `no app probe ${JSON.stringify(name.slice(0, 100))}: the pod declared none by that name (REMORA_APP_PROBES)\n`)
      probe.then((r) => { if (!res.destroyed) send(r.healthy ? 200 : 503, `${r.why}\n`) }, (err: Error) => { if (!res.destroyed) send(503, `${err.message}\n`) })
      return
    }
    const local = ['/config.json', '/endpoints.json', '/shutdown'].includes(path)
    if (local && !isLoopback(req.socket.remoteAddress)) return send(403, `${path} is served to loopback only\n`)
    if (method === 'GET' && path === '/config.json') return json(sources.config)
    if (method === 'GET' && path === '/endpoints.json') return json(sources.endpoints())
    if (path === '/shutdown') {
      if (method !== 'POST') return send(405, 'use POST /shutdown\n')
      send(202, 'shutting down\n')
      hooks.shutdown()
      return
    }
    send(404, 'not found; try /live /ready /metrics /app-health/<container>/<kind> /config.json /endpoints.json\n')
  })
}
