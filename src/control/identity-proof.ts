// Who is asking for a certificate: a bootstrap token from the mesh file (local mode), or a projected
// service account token checked with the Kubernetes TokenReview API (audience remora).
import type { KubeConfig } from '@kubernetes/client-node'
import { timingSafeEqual } from 'node:crypto'
import { spiffeId } from '../mesh/spiffe-id.ts'
import type { Workload } from '../config/mesh-file.ts'
import { Unauthenticated } from '../errors.ts'

export const TOKEN_AUDIENCE = 'remora'

export interface IdentityProof {
  /** The SPIFFE ID the token proves, or throws Unauthenticated. */
  verify (token: string): Promise<string>
}

/** Local mode: each workload of the mesh file has its own bootstrapToken. */
export class BootstrapTokens implements IdentityProof {
  #workloads: readonly Workload[] = []

  update (workloads: Readonly<Record<string, Workload>>): void { this.#workloads = Object.values(workloads) }

  async verify (token: string): Promise<string> {
    const given = Buffer.from(token)
    for (const w of this.#workloads) {
      if (w.bootstrapToken === undefined) continue
      const known = Buffer.from(w.bootstrapToken)
      if (known.length === given.length && timingSafeEqual(known, given)) return w.identity
    }
    throw new Unauthenticated('the token matches no workload\'s bootstrapToken in the mesh file')
  }
}

/** Kubernetes: TokenReview says whose service account token it is, and that it was made for remora. */
export class TokenReviews implements IdentityProof {
  readonly #kc: KubeConfig
  readonly #trustDomain: string

  constructor (kc: KubeConfig, trustDomain: string) {
    this.#kc = kc
    this.#trustDomain = trustDomain
  }

  async verify (token: string): Promise<string> {
    const { AuthenticationV1Api } = await import('@kubernetes/client-node')
    const review = await this.#kc.makeApiClient(AuthenticationV1Api).createTokenReview({
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [TOKEN_AUDIENCE] } },
    })
    const status = review.status
    if (status?.authenticated !== true) throw new Unauthenticated(`TokenReview: not authenticated${status?.error !== undefined ? ` (${status.error})` : ''}`)
    if (!(status.audiences ?? []).includes(TOKEN_AUDIENCE)) throw new Unauthenticated(`TokenReview: the token is not for audience ${TOKEN_AUDIENCE}; project it with audience: ${TOKEN_AUDIENCE}`)
    const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(status.user?.username ?? '')
    if (m === null) throw new Unauthenticated(`TokenReview: ${status.user?.username ?? 'nobody'} is not a service account`)
    return spiffeId(this.#trustDomain, m[1], m[2])
  }
}
