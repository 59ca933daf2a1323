// The admission webhook inside the control plane (as istiod serves injection): its HTTPS certificate issued from
// the mesh CA for the injector Service's names and renewed at 70 % of its lifetime (swapped in place), and, with
// Kubernetes, the MutatingWebhookConfiguration's caBundle kept at the CA's root (webhook-config.ts).
import type { KubeConfig } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import type { CertificateAuthority } from '../identity/ca.ts'
import { RENEW_AT_FRACTION } from '../identity/keys.ts'
import type { HostPort } from '../mesh/host-port.ts'
import type { MeshWide } from '../injection/pod.ts'
import { InjectionWebhook, type WebhookTls } from '../injection/webhook.ts'
import type { ReviewOutcome } from '../injection/review.ts'
import type { CaBundleKeeper } from './webhook-config.ts'
import type { KubeSourceErrorKind } from './kube-informer.ts'

const DEFAULT_TTL_MS = 24 * 3600_000

export interface ControlInjectorOptions {
  readonly ca: CertificateAuthority
  readonly addr: HostPort
  readonly dnsNames: readonly string[]
  /** The control plane's SPIFFE ID (the certificate's URI SAN, as on its discovery port). */
  readonly identity: string
  readonly mesh: MeshWide
  readonly log: Logger
  /** With Kubernetes: the MutatingWebhookConfiguration's caBundle is kept. */
  readonly kubeConfig?: KubeConfig
  /** The webhook certificate's lifetime (tests shorten it). Default 24 h. */
  readonly ttlMs?: number
  readonly onReview?: (outcome: ReviewOutcome) => void
  readonly onError?: (kind: KubeSourceErrorKind) => void
}

export interface ControlInjector {
  readonly address: HostPort
  /** Set when the Kubernetes configuration is kept. */
  readonly caBundle?: CaBundleKeeper
  stop (): Promise<void>
}

export async function startControlInjector (o: ControlInjectorOptions): Promise<ControlInjector> {
  const ttlMs = o.ttlMs ?? DEFAULT_TTL_MS
  const issue = async (): Promise<{ tls: WebhookTls, notAfter: Date }> => {
    const issued = await o.ca.issueServing({ dnsNames: o.dnsNames, identity: o.identity, ttlMs })
    return { tls: { key: issued.key.privateKeyPem, cert: issued.chainPem.join('') }, notAfter: issued.notAfter }
  }
  const first = await issue()
  const webhook = new InjectionWebhook({ mesh: o.mesh, log: o.log, tls: first.tls, onReview: o.onReview })
  const address = await webhook.listen(o.addr)
  let timer: NodeJS.Timeout | undefined
  let stopped = false
  const schedule = (ms: number): void => {
    if (stopped) return
    timer = setTimeout(() => {
      issue().then(({ tls, notAfter }) => {
        if (stopped) return
        webhook.setCredentials(tls)
        o.log.info({ notAfter: notAfter.toISOString() }, 'admission webhook certificate renewed')
        schedule(ttlMs * RENEW_AT_FRACTION)
      }, (err: Error) => {
        o.log.error({ err: err.message }, 'admission webhook certificate not renewed; retrying in 1 min')
        schedule(60_000)
      })
    }, ms)
    timer.unref()
  }
  schedule(ttlMs * RENEW_AT_FRACTION)
  let caBundle: CaBundleKeeper | undefined
  if (o.kubeConfig !== undefined) {
    const { CaBundleKeeper } = await import('./webhook-config.ts')
    caBundle = new CaBundleKeeper({ kubeConfig: o.kubeConfig, log: o.log, rootsPem: o.ca.trustAnchorsPem.join(''), onError: o.onError })
    // List and watch failures are retried (and logged) inside; it fails only when stopped before its first list.
    caBundle.start().catch(() => {})
  }
  o.log.info({ address, dnsNames: o.dnsNames, notAfter: first.notAfter.toISOString() }, `admission webhook listening on ${address.host}:${address.port} (HTTPS, certificate from the mesh CA)`)
  return {
    address,
    caBundle,
    stop: async () => {
      stopped = true
      clearTimeout(timer)
      await caBundle?.stop()
      await webhook.close()
    },
  }
}
