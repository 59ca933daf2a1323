// Settings: flags beat environment beat defaults; a bad value names the variable or flag.
import t from 'tap'
import { parseDuration } from '../../src/parse/duration.ts'
import { parseHostPort } from '../../src/parse/host-port.ts'
import { ProxySettings, readSettings } from '../../src/config/env.ts'
import { loadProxyConfig } from '../../src/config/proxy-config.ts'

const MESH = new URL('../../deploy/local/mesh.yaml', import.meta.url).pathname

t.test('durations and addresses', async (t) => {
  t.equal(parseDuration('250ms'), 250)
  t.equal(parseDuration('1.5s'), 1500)
  t.equal(parseDuration('2m'), 120_000)
  t.throws(() => parseDuration('30'), /expected a duration such as 500ms/)
  t.same(parseHostPort('127.0.0.1:15001'), { host: '127.0.0.1', port: 15001 })
  t.same(parseHostPort('[::1]:15006'), { host: '::1', port: 15006 })
  t.same(parseHostPort(':15000'), { host: '0.0.0.0', port: 15000 })
  t.throws(() => parseHostPort('localhost'), /expected host:port/)
  t.throws(() => parseHostPort('a:70000'), /out of range/)
})

t.test('precedence: flag, then environment, then default', async (t) => {
  const env = { REMORA_LOG_LEVEL: 'debug', REMORA_SHUTDOWN_GRACE: '5s' }
  const s = readSettings(ProxySettings, env, new Map([['--log-level', 'warn']]))
  t.equal(s.logLevel, 'warn')
  t.equal(s.shutdownGrace, 5000)
  t.equal(s.connectTimeout, 5000, 'default')
  t.throws(() => readSettings(ProxySettings, { REMORA_LOG_LEVEL: 'loud' }, new Map()), /environment variable REMORA_LOG_LEVEL: expected one of fatal, error/)
  t.throws(() => readSettings(ProxySettings, {}, new Map([['--admin-addr', 'x']])), /option --admin-addr: expected host:port/)
  t.throws(() => readSettings(ProxySettings, {}, new Map([['--inbund-addr', '1:1']])), /unknown option --inbund-addr/)
})

t.test('the workload entry of the mesh file fills in listener addresses unless set explicitly', async (t) => {
  const { config } = await loadProxyConfig({ REMORA_ADMIN_ADDR: '127.0.0.1:25000' }, new Map([['--mesh-file', MESH], ['--workload', 'web']]))
  t.same(config.inboundAddr, { host: '127.0.0.1', port: 15106 })
  t.same(config.adminAddr, { host: '127.0.0.1', port: 25000 })
  t.same(config.appPorts, [{ port: 18080, protocol: 'auto' }])
  t.equal(config.identity, 'spiffe://cluster.local/ns/demo/sa/web')
  t.ok(Object.isFrozen(config.appPorts), 'frozen')
  await t.rejects(loadProxyConfig({}, new Map([['--mesh-file', MESH], ['--workload', 'nope']])), /REMORA_WORKLOAD is "nope".*known: web, greeter, client/)
})

t.test('the proxy reads the pod\'s remora.dev/* annotations (downward-API file) after flags and variables', async (t) => {
  const dir = t.testdir({ annotations: 'remora.dev/opaque-ports="3306,9042"\nremora.dev/outbound-policy="registry-only"\nremora.dev/detect-timeout="250ms"\nkubectl.kubernetes.io/restartedAt="x"\n' })
  const file = `${dir}/annotations`
  const flags = new Map([['--mesh-file', MESH], ['--workload', 'web']])
  const { config } = await loadProxyConfig({ REMORA_ANNOTATIONS_FILE: file, REMORA_DETECT_TIMEOUT: '2s' }, flags)
  t.same(config.opaquePorts, [3306, 9042], 'remora.dev/opaque-ports sets REMORA_OPAQUE_PORTS')
  t.equal(config.outboundPolicy, 'registry-only', 'remora.dev/outbound-policy sets REMORA_OUTBOUND_POLICY')
  t.equal(config.detectTimeout, 2000, 'a variable wins over the annotation')
  const bad = t.testdir({ annotations: 'remora.dev/outbound-policy="allow-some"\n' })
  await t.rejects(loadProxyConfig({ REMORA_ANNOTATIONS_FILE: `${bad}/annotations` }, flags), /annotation remora\.dev\/outbound-policy in .*annotations: expected one of allow-any, registry-only, got "allow-some"/, 'a bad annotation names itself and the file')
})
