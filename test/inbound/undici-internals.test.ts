// The sidecar loads only two of undici's internal modules (src/http/origin-http1.ts: its whole entry
// point costs ~17 MB of RSS). undici is pinned exactly for that; this fails the moment an upgrade
// moves or changes what those modules are, instead of a sidecar failing at start.
import t from 'tap'
import { createRequire } from 'node:module'
import * as undici from 'undici'

const require = createRequire(import.meta.url)

t.test('undici/lib/dispatcher/agent.js is the public Agent, and api/index.js adds request() to its base', async (t) => {
  const Agent = require('undici/lib/dispatcher/agent.js') as typeof undici.Agent
  t.equal(Agent, undici.Agent, 'the internal module exports the same class as undici\'s entry point')
  const Dispatcher = require('undici/lib/dispatcher/dispatcher.js') as { prototype: object }
  t.ok(Object.prototype.isPrototypeOf.call(Dispatcher.prototype, Agent.prototype), 'dispatcher.js is an ancestor of Agent (where request() is added)')
  const api = require('undici/lib/api/index.js') as Record<string, unknown>
  t.type(api.request, 'function', 'api/index.js has request()')
})
