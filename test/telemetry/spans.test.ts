// The spans' semantic-convention attributes: server.address and server.port from the request's authority.
import t from 'tap'
import { splitAuthority } from '../../src/telemetry/spans.ts'

t.test('an authority is split into server.address and server.port as sent', async (t) => {
  const cases: Array<[string, [string, number | undefined]]> = [
    ['web', ['web', undefined]],
    ['web:8080', ['web', 8080]],
    ['web.default.svc.cluster.local:80', ['web.default.svc.cluster.local', 80]],
    ['10.0.0.7:15006', ['10.0.0.7', 15006]],
    ['[::1]:8080', ['[::1]', 8080]],
    ['[::1]', ['[::1]', undefined]],
    ['[fe80::1%25eth0]', ['[fe80::1%25eth0]', undefined]],
    // Not a port: kept whole, as the regular expression this replaced did.
    ['web:', ['web:', undefined]],
    ['web:http', ['web:http', undefined]],
    ['', ['', undefined]],
  ]
  for (const [authority, expected] of cases) t.same(splitAuthority(authority), expected, JSON.stringify(authority))
})
