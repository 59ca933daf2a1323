// Both inbound listeners read the in-band target port and who counts as a peer through in-band.ts.
import t from 'tap'
import { fromPeer, targetPort } from '../../src/inbound/in-band.ts'

t.test('a peer: with mTLS, a verified identity; without, a request naming the target port', async (t) => {
  t.equal(fromPeer(true, '8080', 'spiffe://cluster.local/ns/a/sa/b'), true)
  t.equal(fromPeer(true, '8080', undefined), false, 'with mTLS on, naming the port is not enough')
  t.equal(fromPeer(false, '8080', undefined), true)
  t.equal(fromPeer(false, undefined, undefined), false)
})

t.test('the target port: the named one, else the redirected destination; a named non-port is null', async (t) => {
  t.equal(targetPort('8080', 9090), 8080, 'named wins over the redirected destination')
  t.equal(targetPort(undefined, 9090), 9090)
  t.equal(targetPort(undefined, undefined), undefined)
  for (const bad of ['0', '65536', '80.5', 'x', '', '-1']) t.equal(targetPort(bad, 9090), null, `"${bad}" is no port`)
  t.equal(targetPort('65535', undefined), 65535)
})
