// Kubernetes quantities: what the API server takes is taken, what it refuses is refused, values compare.
import t from 'tap'
import { parseQuantity, quantityValue } from '../../src/parse/quantity.ts'

t.test('quantities as Kubernetes writes them', async (t) => {
  for (const q of ['50m', '0.5', '1', '64Mi', '1Gi', '1.5Gi', '.5', '2.', '128974848', '129e6', '1E3', '100k', '1M', '10n', '5u']) t.equal(parseQuantity(` ${q} `), q, q)
  for (const q of ['', '-1', '+1', '64MB', '1 Gi', 'Mi', '1.2.3', '1e', '0x10', 'one', '1mi']) t.throws(() => parseQuantity(q), /expected a Kubernetes quantity/, JSON.stringify(q))
})

t.test('values in base units', async (t) => {
  t.equal(quantityValue('50m'), 0.05)
  t.equal(quantityValue('64Mi'), 64 * 2 ** 20)
  t.equal(quantityValue('1G'), 1e9)
  t.equal(quantityValue('129e6'), 129e6)
  t.ok(quantityValue('512Mi') > quantityValue('256Mi'))
  t.ok(quantityValue('1Gi') > quantityValue('1G'))
})
