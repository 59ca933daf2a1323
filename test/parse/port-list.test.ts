// Port lists: single ports and inclusive ranges (a:b or a-b); a bad entry is named with the whole value.
import t from 'tap'
import { formatPortRange, parsePortList } from '../../src/parse/port-list.ts'

t.test('ports and ranges as users write them', async (t) => {
  t.same(parsePortList('80, 9000:9100,9200-9300,,'), [{ first: 80, last: 80 }, { first: 9000, last: 9100 }, { first: 9200, last: 9300 }])
  t.same(parsePortList(''), [])
  t.same(parsePortList('7-7'), [{ first: 7, last: 7 }])
  t.equal(formatPortRange({ first: 7, last: 7 }), '7')
  t.equal(formatPortRange({ first: 1, last: 1024 }), '1:1024')
  t.ok(Object.isFrozen(parsePortList('1')), 'frozen')
})

t.test('bad entries are named', async (t) => {
  t.throws(() => parsePortList('0'), /^"0" is not a port number 1-65535$/)
  t.throws(() => parsePortList('80,70000'), /"70000" in "80,70000" is not a port number 1-65535/)
  t.throws(() => parsePortList('9100:9000'), /range "9100:9000" ends before it starts/)
  t.throws(() => parsePortList('http'), /"http" is not a port number/)
  for (const bad of ['1:2:3', '80-', '-80', '1-2-3']) t.throws(() => parsePortList(bad), new RegExp(`"${bad}" is not a port or a range such as 9000:9100 or 9000-9100`))
  t.throws(() => parsePortList('1.5'), /"1\.5" is not a port number/)
})
