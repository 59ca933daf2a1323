// remora init against a real kernel, in throw-away network namespaces: both backends, idempotence, dry run, cleanup, errors.
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chainRules, JUMPS, type InterceptOptions } from '../../src/init/rules.ts'
import { BACKENDS } from '../../src/init/iptables.ts'
import { inNetns, netns, remoraInit, saved, savedAll, whyNoBackend, whyNoNetns } from './netns.ts'

const noNetns = await whyNoNetns()
const DEFAULTS: InterceptOptions = {
  proxyUid: 2102, inboundPort: 15006, outboundPort: 15001, adminPort: 15000,
  skipInboundPorts: [], skipOutboundPorts: [], skipOutboundCidrs: [],
}
const UNPRIVILEGED = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all']
const remoraLines = (save: string): string[] => save.split('\n').filter((l) => l.includes('REMORA_'))

for (const backend of BACKENDS) {
  t.test(`${backend}: installs both families, and a second run changes nothing`, { skip: noNetns ?? whyNoBackend(backend) }, async (t) => {
    const ns = await netns(t, `apply-${backend}`)
    const first = await remoraInit(ns, ['--iptables', backend])
    t.equal(first.code, 0, first.stderr)
    t.match(first.stdout, /"msg":"ipv4 interception rules installed"/)
    t.match(first.stdout, /"msg":"ipv6 interception rules installed"/)
    const once = await saved(ns, backend)
    for (const [family, bin] of [['ipv4', 'iptables'], ['ipv6', 'ip6tables']] as const) {
      const section = once.split(`# ${bin}-${backend}-save`)[1].split('# ')[0]
      t.same(section.split('\n').filter((l) => l.startsWith('-A ')), [...JUMPS, ...chainRules(DEFAULTS, family)], `${family}: exactly remora's rules, as generated`)
    }
    const second = await remoraInit(ns, ['--iptables', backend])
    t.equal(second.code, 0, second.stderr)
    t.match(second.stdout, /"jumpsAdded":0/)
    t.equal(await saved(ns, backend), once, 'iptables-save identical after the second run')
    const other = backend === 'nft' ? 'legacy' : 'nft'
    t.same(remoraLines(await saved(ns, other)), [], `nothing in ${other}`)
  })
}

t.test('auto picks the backend that already holds rules', { skip: noNetns ?? whyNoBackend('legacy') ?? whyNoBackend('nft') }, async (t) => {
  const ns = await netns(t, 'auto')
  t.equal((await inNetns(ns, ['iptables-legacy', '-t', 'nat', '-A', 'POSTROUTING', '-j', 'ACCEPT'])).code, 0)
  const r = await remoraInit(ns, [])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /"backend":"legacy","why":"it already holds 1 rules"/)
  t.equal(remoraLines(await saved(ns, 'legacy')).length, 4 + 2 + 8 + 4 + 2 + 8, 'chains, jumps and rules of both families in legacy')
  t.same(remoraLines(await saved(ns, 'nft')), [])
  const fresh = await netns(t, 'auto-fresh')
  t.match((await remoraInit(fresh, [])).stdout, /"backend":"nft","why":"no backend holds rules yet; nft preferred"/)
})

t.test('--dry-run prints both families and changes nothing', { skip: noNetns }, async (t) => {
  const ns = await netns(t, 'dry')
  const before = await savedAll(ns)
  const r = await remoraInit(ns, ['--dry-run', '--skip-outbound-cidrs', '10.96.0.1,fd00::/8'])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /^# IPv4: iptables-restore --noflush\n\*nat\n/m)
  t.match(r.stdout, '-A REMORA_OUTPUT -d 10.96.0.1/32 -j RETURN')
  t.match(r.stdout, '-A REMORA_OUTPUT -d fd00::/8 -j RETURN')
  t.equal(await savedAll(ns), before)
})

t.test('--cleanup removes jumps and chains from every backend and family, and is idempotent', { skip: noNetns ?? whyNoBackend('legacy') ?? whyNoBackend('nft') }, async (t) => {
  const ns = await netns(t, 'cleanup')
  for (const backend of BACKENDS) t.equal((await remoraInit(ns, ['--iptables', backend])).code, 0)
  t.ok(remoraLines(await savedAll(ns)).length > 0)
  const r = await remoraInit(ns, ['--cleanup'])
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stdout.match(/interception rules removed/g)?.length, 4, 'nft and legacy, IPv4 and IPv6')
  const after = await savedAll(ns)
  t.same(remoraLines(after), [], 'no REMORA chain or jump left')
  const again = await remoraInit(ns, ['--cleanup'])
  t.equal(again.code, 0, again.stderr)
  t.match(again.stdout, /nothing to remove/)
  t.equal(await savedAll(ns), after)
})

t.test('the annotations file is honoured, below flags and variables', { skip: noNetns }, async (t) => {
  const ns = await netns(t, 'annotations')
  const dir = mkdtempSync(join(tmpdir(), 'remora-init-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'annotations')
  writeFileSync(file, 'remora.dev/inject="enabled"\nremora.dev/skip-inbound-ports="9000-9100"\nremora.dev/skip-outbound-cidrs="10.96.0.0/12,fd00::/8"\nremora.dev/proxy-uid="4000"\nremora.dev/ipv6="off"\n')
  const r = await remoraInit(ns, ['--iptables', 'nft', '--annotations-file', file], { REMORA_PROXY_UID: '4001' })
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /IPv6 rules skipped/)
  const now = await saved(ns, 'nft')
  t.match(now, '-A REMORA_INBOUND -p tcp -m tcp --dport 9000:9100 -j RETURN')
  t.match(now, '-A REMORA_OUTPUT -d 10.96.0.0/12 -j RETURN')
  t.match(now, '-A REMORA_OUTPUT -m owner --uid-owner 4001 -j RETURN', 'the variable beats the annotation')
  t.notMatch(now.split('# ip6tables')[1], 'REMORA_', 'remora.dev/ipv6="off": no IPv6 rules')
})

t.test('errors: no iptables binary, no NET_ADMIN, bad values, a rule the kernel refuses', { skip: noNetns }, async (t) => {
  const ns = await netns(t, 'errors')
  const before = await savedAll(ns)
  const empty = mkdtempSync(join(tmpdir(), 'remora-empty-path-'))
  t.teardown(() => rmSync(empty, { recursive: true, force: true }))

  const noBinary = await remoraInit(ns, [], {}, ['env', `PATH=${empty}`])
  t.equal(noBinary.code, 2)
  t.match(noBinary.stderr, `remora: no iptables found: looked for iptables-nft-save, iptables-legacy-save in PATH (${empty})`)
  t.match(noBinary.stderr, /apt-get install iptables.*\[REMORA_INIT_IPTABLES_MISSING\]/)
  const noLegacy = await remoraInit(ns, ['--iptables', 'legacy'], {}, ['env', `PATH=${empty}`])
  t.match(noLegacy.stderr, `remora: iptables-legacy-save not found in PATH (${empty})`)
  t.equal((await remoraInit(ns, ['--cleanup'], {}, ['env', `PATH=${empty}`])).code, 2)

  for (const args of [[], ['--iptables', 'legacy'], ['--cleanup']]) {
    const denied = await remoraInit(ns, args, {}, UNPRIVILEGED)
    t.equal(denied.code, 2, `${args.join(' ')} as uid 65534`)
    t.match(denied.stderr, /remora: ip6?tables-(nft|legacy)-save was refused \(.*Permission denied.*\): remora init must run as root with the NET_ADMIN and NET_RAW capabilities.*\[REMORA_INIT_PERMISSION\]/)
  }

  const badCidr = await remoraInit(ns, ['--skip-outbound-cidrs', '10.96.0.0/12,10.300.0.0/16'])
  t.equal(badCidr.code, 2)
  t.match(badCidr.stderr, 'remora: option --skip-outbound-cidrs: "10.300.0.0/16" is not an IPv4 or IPv6 address or CIDR')
  const badPorts = await remoraInit(ns, [], { REMORA_SKIP_INBOUND_PORTS: '8080,90000' })
  t.match(badPorts.stderr, 'remora: environment variable REMORA_SKIP_INBOUND_PORTS: "90000" in "8080,90000" is not a port number 1-65535 [REMORA_CONFIG_ENV]')
  const file = join(empty, 'annotations')
  writeFileSync(file, 'remora.dev/skip-outbound-ports="5432:abc"\n')
  const badAnnotation = await remoraInit(ns, [], { REMORA_ANNOTATIONS_FILE: file })
  t.match(badAnnotation.stderr, `remora: annotation remora.dev/skip-outbound-ports in ${file}: "abc" in "5432:abc" is not a port number 1-65535 [REMORA_CONFIG_ANNOTATION]`)
  t.equal(await savedAll(ns), before, 'nothing changed by any of these')

  // No option makes the kernel refuse a rule, so hand restore() one it refuses, in the namespace.
  const refuse = async (backend: string): Promise<string> => {
    const script = `const { restore } = await import(${JSON.stringify(new URL('../../src/init/iptables.ts', import.meta.url).pathname)})
      await restore('${backend}', 'ipv4', '*nat\\n:REMORA_X - [0:0]\\n-A REMORA_X -p tcp -j RETURN\\n-A PREROUTING -m owner --uid-owner 5 -j REMORA_X\\nCOMMIT\\n').then(() => console.log('applied'), (e) => console.log(e.code + ' ' + e.message))`
    return (await inNetns(ns, [process.execPath, '--input-type=module', '-e', script])).stdout
  }
  if (whyNoBackend('nft') === undefined) t.match(await refuse('nft'), /REMORA_INIT_RULE_REFUSED iptables-nft-restore: the IPv4 rule at line 4 was refused: "-A PREROUTING -m owner --uid-owner 5 -j REMORA_X" \(.*RULE_APPEND failed/)
  if (whyNoBackend('legacy') === undefined) t.match(await refuse('legacy'), /REMORA_INIT_RULE_REFUSED iptables-legacy-restore: the kernel refused the IPv4 nat table at COMMIT \(line 5;/)
  t.same(remoraLines(await savedAll(ns)), [], 'a refused transaction leaves nothing behind')
})
