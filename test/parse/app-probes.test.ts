// REMORA_APP_PROBES: the injector's JSON of the app's probes, parsed strictly; every error names the probe.
import t from 'tap'
import { appProbeOf, parseAppProbes } from '../../src/parse/app-probes.ts'
import { ProxySettings, readSettings } from '../../src/config/env.ts'
import { loadProxyConfig } from '../../src/config/proxy-config.ts'

const MESH = new URL('../../deploy/local/mesh.yaml', import.meta.url).pathname

t.test('http and tcp probes as the injector writes them', async (t) => {
  const probes = parseAppProbes(JSON.stringify({
    'web/liveness': { port: 8080, path: '/healthz?x=1', scheme: 'HTTPS', headers: [{ name: 'Host', value: 'web.local' }, { name: 'x-token', value: 'a b' }] },
    'web/readiness': { port: 8080, tcp: true },
    'side-car-2/startup': { port: 9000 },
  }))
  t.same({ ...probes }, {
    'web/liveness': { type: 'http', port: 8080, path: '/healthz?x=1', scheme: 'HTTPS', headers: [{ name: 'Host', value: 'web.local' }, { name: 'x-token', value: 'a b' }] },
    'web/readiness': { type: 'tcp', port: 8080 },
    'side-car-2/startup': { type: 'http', port: 9000, path: '/', scheme: 'HTTP', headers: [] },
  }, 'scheme defaults to HTTP, path to / (as kubelet), headers to none')
  t.ok(Object.isFrozen(probes) && Object.isFrozen(probes['web/liveness']), 'frozen')
  const live = probes['web/liveness']
  t.ok(live.type === 'http' && Object.isFrozen(live.headers) && Object.isFrozen(live.headers[0]), 'frozen all the way down')
  t.same({ ...parseAppProbes(' {} ') }, {}, 'no probes is fine')
  t.equal(appProbeOf(probes, 'web/readiness')?.type, 'tcp')
  for (const name of ['web', 'constructor', '__proto__', 'toString', 'web/liveness/', 'hasOwnProperty']) {
    t.equal(appProbeOf(probes, name), undefined, `${name}: only a declared probe is found, never an inherited property`)
  }
})

t.test('a bad probe is refused, naming its key and what is wrong', async (t) => {
  const bad = (value: unknown): string => JSON.stringify({ 'web/readiness': { port: 8080 }, ...(value as object) })
  const cases: Array<[unknown, RegExp]> = [
    [{ 'web/alive': { port: 1 } }, /^"web\/alive": the probe kind "alive" is not one of liveness, readiness, startup$/],
    [{ web: { port: 1 } }, /^"web": expected "<container>\/<kind>"/],
    [{ 'Web/liveness': { port: 1 } }, /^"Web\/liveness": expected "<container>\/<kind>" with a container name/],
    [{ 'a/b/liveness': { port: 1 } }, /^"a\/b\/liveness": the probe kind "b\/liveness" is not one of/],
    [{ 'web/liveness': { port: 0 } }, /^"web\/liveness": port must be a number 1-65535, got 0$/],
    [{ 'web/liveness': { port: 70000 } }, /^"web\/liveness": port must be a number 1-65535, got 70000$/],
    [{ 'web/liveness': { port: 'http' } }, /^"web\/liveness": port must be a number 1-65535, got "http"$/],
    [{ 'web/liveness': { port: 80.5 } }, /port must be a number 1-65535, got 80\.5/],
    [{ 'web/liveness': { path: '/' } }, /^"web\/liveness": port must be a number 1-65535, got nothing$/],
    [{ 'web/liveness': { port: 80, path: 'healthz' } }, /^"web\/liveness": path must start with "\/".*got "healthz"$/],
    [{ 'web/liveness': { port: 80, path: '/a b' } }, /^"web\/liveness": path must start with "\/" and hold only visible ASCII/],
    [{ 'web/liveness': { port: 80, path: '/a#b' } }, /path must start with/],
    [{ 'web/liveness': { port: 80, scheme: 'http' } }, /^"web\/liveness": scheme must be "HTTP" or "HTTPS", got "http"$/],
    [{ 'web/liveness': { port: 80, timeoutSeconds: 1 } }, /^"web\/liveness": unknown field "timeoutSeconds" \(an http probe has port, path, scheme and headers; a tcp probe port and tcp\)$/],
    [{ 'web/liveness': { port: 80, tcp: true, path: '/' } }, /^"web\/liveness": unknown field "path" \(a tcp probe has port and tcp\)$/],
    [{ 'web/liveness': { port: 80, tcp: false } }, /^"web\/liveness": tcp must be true, got false$/],
    [{ 'web/liveness': { port: 80, headers: { x: 'y' } } }, /^"web\/liveness": headers must be a list/],
    [{ 'web/liveness': { port: 80, headers: [{ name: 'x', value: 'y', extra: 1 }] } }, /^"web\/liveness" headers\[0\]: unknown field "extra"/],
    [{ 'web/liveness': { port: 80, headers: [{ name: 'bad name', value: 'y' }] } }, /^"web\/liveness" headers\[0\]: name must be an HTTP header name, got "bad name"$/],
    [{ 'web/liveness': { port: 80, headers: [{ name: 'x', value: 'secret\r\nInjected: 1' }] } }, /^"web\/liveness" headers\[0\]: value of x must be a string of visible characters, spaces and tabs, got one with control characters \(not shown/],
    [{ 'web/liveness': { port: 80, headers: [{ name: 'x' }] } }, /headers\[0\]: value of x must be a string/],
    [{ 'web/liveness': 8080 }, /^"web\/liveness": expected an object such as/],
    [{ 'web/liveness': null }, /^"web\/liveness": expected an object such as .*got null$/],
  ]
  for (const [value, message] of cases) t.throws(() => parseAppProbes(bad(value)), { message }, JSON.stringify(value))
  t.throws(() => parseAppProbes('[]'), { message: /^expected a JSON object of probes by "<container>\/<kind>", got a list$/ })
  t.throws(() => parseAppProbes('{"web/liveness": '), { message: /^not JSON \(.*\); expected \{"<container>\/<liveness\|readiness\|startup>"/ })
  t.notMatch((() => { try { parseAppProbes(bad({ 'web/liveness': { port: 80, headers: [{ name: 'authorization', value: 'Bearer s3cret\n' }] } })) } catch (err) { return (err as Error).message } return '' })(), /s3cret/, 'a header value is never quoted in the error')
})

t.test('the setting: REMORA_APP_PROBES, in the config as a frozen map, empty when unset; a bad one names the variable and the key', async (t) => {
  t.equal(ProxySettings.appProbes.env, 'REMORA_APP_PROBES')
  const flags = new Map([['--mesh-file', MESH], ['--workload', 'web']])
  const { config } = await loadProxyConfig({ REMORA_APP_PROBES: '{"web/readiness":{"port":18080,"path":"/ready"}}' }, flags)
  t.same({ ...config.appProbes }, { 'web/readiness': { type: 'http', port: 18080, path: '/ready', scheme: 'HTTP', headers: [] } })
  t.ok(Object.isFrozen(config.appProbes))
  t.same({ ...(await loadProxyConfig({}, flags)).config.appProbes }, {}, 'none declared')
  t.throws(() => readSettings(ProxySettings, { REMORA_APP_PROBES: '{"web/liveness":{"port":8080,"path":"healthz"}}' }, new Map()),
    { code: 'REMORA_CONFIG_ENV', message: /^environment variable REMORA_APP_PROBES: "web\/liveness": path must start with "\/"/ })
  const annotations = t.testdir({ annotations: 'remora.dev/app-probes="{\\"web/liveness\\":{\\"port\\":18080}}"\n' })
  t.same({ ...(await loadProxyConfig({ REMORA_ANNOTATIONS_FILE: `${annotations}/annotations` }, flags)).config.appProbes }, {},
    'not read from a pod annotation: only the injector declares probes')
})
