// Small real apps for tests: a node:http server whose behaviour each test chooses.
import http from 'node:http'
import { once } from 'node:events'
import { freePort, type Teardown } from './mesh.ts'

export interface App { port: number, server: http.Server, requests: number }

/** Starts a node:http app on 127.0.0.1 with the given handler; closed at teardown. */
export async function startApp (t: Teardown, handler: http.RequestListener): Promise<App> {
  const port = await freePort()
  const app: App = { port, server: http.createServer(), requests: 0 }
  app.server.on('request', (req, res) => { app.requests++; handler(req, res) })
  app.server.listen(port, '127.0.0.1')
  await once(app.server, 'listening')
  t.teardown(() => { app.server.closeAllConnections(); app.server.close() })
  return app
}

/** An app that answers `name` and the path, so a test can tell which endpoint served it. */
export function namedApp (name: string): http.RequestListener {
  return (req, res) => {
    req.resume()
    req.on('end', () => res.end(`${name} ${req.url}`))
  }
}
