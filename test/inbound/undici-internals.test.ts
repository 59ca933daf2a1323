// The sidecar loads one of undici's internal modules (src/http/origin-http1.ts: its whole entry
// point costs ~17 MB of RSS) and drives it through dispatch() with a handler of its own. undici is
// pinned exactly for that; this fails the moment an upgrade moves that module or changes the
// handler calls the relay relies on, instead of a sidecar failing at start or mid-request.
import t from 'tap'
import http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { createRequire } from 'node:module'
import * as undici from 'undici'

const require = createRequire(import.meta.url)

t.test('undici/lib/dispatcher/agent.js is the public Agent', async (t) => {
  const Agent = require('undici/lib/dispatcher/agent.js') as typeof undici.Agent
  t.equal(Agent, undici.Agent, 'the internal module exports the same class as undici\'s entry point')
})

t.test('dispatch() calls the handler as the relay expects: parsed headers, pause/resume, trailers', async (t) => {
  const big = Buffer.alloc(4 * 1024 * 1024, 'x')
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'x-many': ['a', 'b'], trailer: 'x-check' })
    res.write(big)
    res.addTrailers({ 'x-check': 'done' })
    res.end()
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  const agent = new undici.Agent({ pipelining: 1 })
  t.teardown(() => agent.close())
  const seen: string[] = []
  let received = 0
  let paused = false
  const done = new Promise<Record<string, unknown>>((resolve, reject) => {
    agent.dispatch({ origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, method: 'GET', path: '/', headers: { host: 'app' } }, {
      onRequestStart (controller) { seen.push(typeof controller.abort === 'function' ? 'start' : 'start without abort') },
      onResponseStart (controller, status, headers) {
        seen.push(`head ${status} ${String(headers['content-type'])} ${JSON.stringify(headers['x-many'])}`)
      },
      onResponseData (controller, chunk) {
        received += chunk.length
        // Pause once, as the relay does when the caller falls behind; resume later.
        if (!paused) {
          paused = true
          controller.pause()
          setImmediate(() => controller.resume())
        }
      },
      onResponseEnd (controller, trailers) { resolve(trailers as Record<string, unknown>) },
      onResponseError (controller, err) { reject(err) },
    })
  })
  const trailers = await done
  t.same(seen, ['start', 'head 200 text/plain ["a","b"]'], 'request start, then the head with headers parsed (lower-case names, repeated ones as arrays)')
  t.equal(received, big.length, 'the whole body arrives through onResponseData, paused and resumed')
  t.same(trailers, { 'x-check': 'done' }, 'trailers parsed at the end')
})

t.test('dispatch() reports a refused connection to onResponseError, by its code', async (t) => {
  const probe = http.createServer()
  probe.listen(0, '127.0.0.1')
  await once(probe, 'listening')
  const port = (probe.address() as AddressInfo).port
  await new Promise<void>((resolve) => probe.close(() => resolve()))
  const agent = new undici.Agent()
  t.teardown(() => agent.close())
  const err = await new Promise<NodeJS.ErrnoException>((resolve) => {
    agent.dispatch({ origin: `http://127.0.0.1:${port}`, method: 'GET', path: '/', headers: {} }, {
      onRequestStart () {},
      onResponseStart () {},
      onResponseData () {},
      onResponseEnd () {},
      onResponseError (controller, e) { resolve(e as NodeJS.ErrnoException) },
    })
  })
  t.equal(err.code, 'ECONNREFUSED', 'the socket error, by its code (classified as connect refused by the relay)')
})
