// CIDRs: IPv4 and IPv6, a bare address one host, host bits cleared as the kernel stores them; bad ones named.
import t from 'tap'
import { formatCidr, parseCidr, parseCidrList } from '../../src/parse/cidr.ts'

t.test('IPv4 and IPv6 blocks and addresses', async (t) => {
  t.same(parseCidr('10.96.0.0/12'), { family: 4, network: '10.96.0.0', prefix: 12 })
  t.same(parseCidr(' 10.96.0.1 '), { family: 4, network: '10.96.0.1', prefix: 32 })
  t.equal(formatCidr(parseCidr('10.1.2.3/8')), '10.0.0.0/8', 'host bits cleared, as iptables shows it')
  t.equal(formatCidr(parseCidr('0.0.0.0/0')), '0.0.0.0/0')
  t.same(parseCidr('fd00::1'), { family: 6, network: 'fd00::1', prefix: 128 })
  t.equal(formatCidr(parseCidr('2001:DB8:0:0:1::/32')), '2001:db8::/32', 'canonical text form')
  t.equal(formatCidr(parseCidr('fe80::1:2:3:4/64')), 'fe80::/64')
  t.equal(formatCidr(parseCidr('2001:db8::ff/121')), '2001:db8::80/121')
  t.equal(formatCidr(parseCidr('1:2:3:4:5:6:7:8')), '1:2:3:4:5:6:7:8/128')
  t.equal(formatCidr(parseCidr('::/0')), '::/0')
  t.equal(parseCidr('::ffff:10.1.2.3').family, 6, 'an IPv4-mapped address is IPv6')
  t.same(parseCidrList('10.0.0.0/8, fd00::/8,,').map(formatCidr), ['10.0.0.0/8', 'fd00::/8'])
  t.same(parseCidrList(''), [])
})

t.test('bad ones are named', async (t) => {
  for (const bad of ['10.0.0.256', 'x', 'fe80::1%eth0', '10.0.0', 'example.com']) {
    t.throws(() => parseCidr(bad), new RegExp(`^"${bad.replace(/\./g, '\\.')}" is not an IPv4 or IPv6 address or CIDR`))
  }
  t.throws(() => parseCidr('10.0.0.0/33'), /"10\.0\.0\.0\/33": the prefix length must be 0-32/)
  t.throws(() => parseCidr('fd00::/129'), /the prefix length must be 0-128/)
  t.throws(() => parseCidr('10.0.0.0/'), /prefix length/)
  t.throws(() => parseCidrList('10.0.0.0/8, nope'), /"nope" is not an IPv4 or IPv6 address or CIDR .*, in "10\.0\.0\.0\/8, nope"/)
})
