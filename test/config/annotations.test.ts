// Pod annotations from a downward-API file: Go-quoted values, remora.dev/<setting> read after flags and env.
import t from 'tap'
import { parseAnnotations, unquoteGo } from '../../src/config/annotations.ts'
import { annotationOf, isExplicit, ProxySettings, readSettings } from '../../src/config/env.ts'

t.test('the downward-API format: one key="value" per line, Go escapes', async (t) => {
  t.equal(unquoteGo(String.raw`a\"b\\c\nd\te`), 'a"b\\c\nd\te')
  t.equal(unquoteGo(String.raw`caf\u00e9 \U0001f600 \x41\101 é`), 'café 😀 AA é')
  t.equal(unquoteGo(String.raw`\xc3\xa9`), 'é', '\\x bytes make UTF-8 together')
  t.throws(() => unquoteGo(String.raw`\q`), /bad escape \\q/)
  const a = parseAnnotations([
    'kubectl.kubernetes.io/last-applied-configuration="{\\"apiVersion\\":\\"v1\\"}\\n"',
    'remora.dev/inject="enabled"',
    'remora.dev/skip-inbound-ports="9000:9100"',
    '',
  ].join('\n'), '/etc/podinfo/annotations')
  t.equal(a.file, '/etc/podinfo/annotations')
  t.equal(a.values.get('kubectl.kubernetes.io/last-applied-configuration'), '{"apiVersion":"v1"}\n')
  t.equal(a.values.get('remora.dev/skip-inbound-ports'), '9000:9100')
  t.throws(() => parseAnnotations('a="1"\nb=2\n', 'f'), { code: 'REMORA_CONFIG_ANNOTATION', message: /annotations file f line 2: expected key="value"/ })
  t.throws(() => parseAnnotations('a="\\z"\n', 'f'), /line 1: bad escape \\z/)
})

t.test('readSettings: flag, then env, then annotation, then default; the error names the annotation and file', async (t) => {
  t.equal(annotationOf(ProxySettings.logLevel), 'remora.dev/log-level')
  const annotations = parseAnnotations('remora.dev/log-level="debug"\nremora.dev/connect-timeout="2s"\nremora.dev/shutdown-grace="1s"\n', '/pod/annotations')
  const s = readSettings(ProxySettings, { REMORA_SHUTDOWN_GRACE: '9s' }, new Map([['--log-level', 'warn']]), annotations)
  t.equal(s.logLevel, 'warn')
  t.equal(s.shutdownGrace, 9000)
  t.equal(s.connectTimeout, 2000)
  t.equal(s.discoveryTimeout, 3000, 'default')
  t.ok(isExplicit(ProxySettings.connectTimeout, {}, new Map(), annotations), 'an annotation is explicit')
  t.notOk(isExplicit(ProxySettings.connectTimeout, {}, new Map()))
  const bad = parseAnnotations('remora.dev/log-level="loud"\n', '/pod/annotations')
  t.throws(() => readSettings(ProxySettings, {}, new Map(), bad), { code: 'REMORA_CONFIG_ANNOTATION', message: 'annotation remora.dev/log-level in /pod/annotations: expected one of fatal, error, warn, info, debug, trace, silent, got "loud"' })
  t.equal(readSettings(ProxySettings, { REMORA_LOG_LEVEL: 'error' }, new Map(), bad).logLevel, 'error', 'a bad annotation under a variable is not read')
})
