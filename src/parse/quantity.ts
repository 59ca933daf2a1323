// Kubernetes resource quantities as users write them (`50m`, `64Mi`, `1.5`, `1e3`): checked with the
// grammar of k8s.io/apimachinery's resource.Quantity, so a value the API server would refuse is refused here.

const SUFFIXES: Readonly<Record<string, number>> = {
  '': 1, n: 1e-9, u: 1e-6, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
}

// <number><suffix>: digits with an optional fraction, then a binary-SI, decimal-SI or exponent suffix.
const QUANTITY = /^(\d+(?:\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$/

/** A non-negative quantity as written (trimmed); throws saying what is expected. */
export function parseQuantity (raw: string): string {
  const v = raw.trim()
  if (!QUANTITY.test(v)) {
    throw new Error(`expected a Kubernetes quantity such as 50m, 0.5, 64Mi or 1Gi (a number, then n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent e3), got "${raw}"`)
  }
  return v
}

/** The value of a quantity parseQuantity accepted, in base units (cores, bytes): for comparisons. */
export function quantityValue (quantity: string): number {
  const m = QUANTITY.exec(quantity.trim())
  if (m === null) throw new Error(`not a quantity: "${quantity}"`)
  const suffix = m[2] ?? ''
  const scale = /^[eE]/.test(suffix) ? 10 ** Number(suffix.slice(1)) : SUFFIXES[suffix]
  return Number(m[1]) * scale
}
