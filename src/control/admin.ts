// The control plane's admin server: /live /ready /metrics for all; /catalog.json from loopback only.
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import { isLoopback } from '../admin/server.ts'
import type { Catalog } from './catalog.ts'
import type { ControlMetrics } from './metrics.ts'

export function createControlAdmin (catalog: Catalog, metrics: ControlMetrics, ready: () => { ready: boolean, why: string }): http.Server {
  return http.createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0]
    const send = (status: number, body: string, type = 'text/plain; charset=utf-8'): void => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' }).end(body)
    }
    if (req.method !== 'GET') return send(405, 'the control plane admin server answers GET only\n')
    if (path === '/live') return send(200, 'live\n')
    if (path === '/ready') {
      const r = ready()
      return send(r.ready ? 200 : 503, `${r.why}\n`)
    }
    if (path === '/metrics') {
      metrics.registry.metrics().then((text) => send(200, text, metrics.registry.contentType), (err: Error) => send(500, err.message))
      return
    }
    if (path === '/catalog.json') {
      if (!isLoopback(req.socket.remoteAddress)) return send(403, '/catalog.json is served to loopback only\n')
      const services = [...catalog.entries()].map((e) => ({ version: e.version, ...e.service }))
      return send(200, JSON.stringify({ source: catalog.source, revision: catalog.revision, synced: catalog.synced, services }, null, 2) + '\n', 'application/json')
    }
    send(404, 'not found; try /live /ready /metrics /catalog.json\n')
  })
}
