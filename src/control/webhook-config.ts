// The admission webhook's MutatingWebhookConfiguration (remora-injector): the control plane keeps every webhook's
// clientConfig.caBundle equal to the mesh CA's root, so the API server trusts the certificate the webhook serves.
// It watches that one object (a field selector on its name, so RBAC may name it) and patches it back whenever it
// differs: when first seen, after someone edits it, after `kubectl apply -k` empties it again.
import { AdmissionregistrationV1Api, type KubeConfig, type KubernetesObject, type V1MutatingWebhookConfiguration } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import { backoffMs } from '../resilience/backoff.ts'
import { KubeInformers, type KubeSourceErrorKind } from './kube-informer.ts'
import { apiMessage, apiStatus } from './ca-store.ts'

/** The MutatingWebhookConfiguration k8s/ installs, and whose caBundle the control plane keeps. */
export const WEBHOOK_CONFIGURATION = 'remora-injector'
const DEFAULT_BACKOFF = { baseMs: 500, maxMs: 30_000 }

export interface CaBundleOptions {
  readonly kubeConfig: KubeConfig
  readonly log: Logger
  /** The CA's root(s), PEM: their base64 is the caBundle. */
  readonly rootsPem: string
  readonly name?: string
  readonly onError?: (kind: KubeSourceErrorKind) => void
  readonly backoff?: { readonly baseMs: number, readonly maxMs: number }
}

type Op = { op: 'test' | 'add', path: string, value: unknown }

export class CaBundleKeeper {
  readonly #o: CaBundleOptions
  readonly #name: string
  readonly #bundle: string
  readonly #api: AdmissionregistrationV1Api
  readonly #informers: KubeInformers<'mutatingwebhookconfigurations'>
  #latest: V1MutatingWebhookConfiguration | undefined
  #running = false
  #again = false
  #failures = 0
  #retry: NodeJS.Timeout | undefined
  #stopped = false

  constructor (options: CaBundleOptions) {
    this.#o = options
    this.#name = options.name ?? WEBHOOK_CONFIGURATION
    this.#bundle = Buffer.from(options.rootsPem).toString('base64')
    this.#api = options.kubeConfig.makeApiClient(AdmissionregistrationV1Api)
    this.#informers = new KubeInformers<'mutatingwebhookconfigurations'>(
      { kubeConfig: options.kubeConfig, log: options.log, onError: options.onError, backoff: options.backoff },
      {},
      (_resource, obj, deleted) => this.#seen(obj, deleted),
      [{ resource: 'mutatingwebhookconfigurations', fieldSelector: `metadata.name=${this.#name}` }],
    )
  }

  /** Starts watching; resolves once the first list is in (and its patch, if any, under way). */
  async start (): Promise<void> {
    await this.#informers.start()
    if (this.#latest === undefined) {
      this.#o.log.warn({ webhook: this.#name }, `MutatingWebhookConfiguration ${this.#name} not found; its caBundle is set as soon as it is created (kubectl apply -k k8s/)`)
    }
  }

  async stop (): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#retry)
    await this.#informers.stop()
  }

  /** Every webhook of the configuration holds the CA's root (tests, readiness). */
  get current (): boolean {
    return this.#latest !== undefined && this.#ops(this.#latest).length === 0
  }

  #seen (obj: KubernetesObject, deleted: boolean): void {
    if (obj.metadata?.name !== this.#name) return
    this.#latest = deleted ? undefined : obj as V1MutatingWebhookConfiguration
    if (!deleted) this.#reconcile()
  }

  /** The patch that sets every webhook's caBundle, each guarded by a test of the webhook's name at that index. */
  #ops (config: V1MutatingWebhookConfiguration): Op[] {
    return (config.webhooks ?? []).flatMap((w, i): Op[] => w.clientConfig?.caBundle === this.#bundle || typeof w.clientConfig !== 'object'
      ? []
      : [{ op: 'test', path: `/webhooks/${i}/name`, value: w.name }, { op: 'add', path: `/webhooks/${i}/clientConfig/caBundle`, value: this.#bundle }])
  }

  #reconcile (): void {
    if (this.#stopped) return
    if (this.#running) { this.#again = true; return }
    const config = this.#latest
    const ops = config === undefined ? [] : this.#ops(config)
    if (ops.length === 0) return
    this.#running = true
    const edited = (config?.webhooks ?? []).some((w) => (w.clientConfig?.caBundle ?? '') !== '')
    this.#api.patchMutatingWebhookConfiguration({ name: this.#name, body: ops }).then((patched) => {
      this.#failures = 0
      this.#latest = patched
      this.#o.log.info({ webhook: this.#name, webhooks: ops.length / 2 }, edited
        ? `MutatingWebhookConfiguration ${this.#name}: caBundle differed from the CA's root (edited) and was put back`
        : `MutatingWebhookConfiguration ${this.#name}: caBundle set to the CA's root`)
    }, (err: unknown) => {
      const status = apiStatus(err)
      // 422: a test failed (the webhooks changed under us), 404: deleted. The watch brings the new state.
      if (status === 422 || status === 404 || status === 409) return
      const { baseMs, maxMs } = this.#o.backoff ?? DEFAULT_BACKOFF
      const delay = backoffMs(++this.#failures, baseMs, maxMs)
      this.#o.log.warn({ webhook: this.#name, attempt: this.#failures, retryInMs: delay }, `MutatingWebhookConfiguration ${this.#name}: caBundle not set: ${apiMessage(err)}; retrying (the control plane needs get, list, watch and patch on it)`)
      clearTimeout(this.#retry)
      this.#retry = setTimeout(() => this.#reconcile(), delay)
      this.#retry.unref()
    }).finally(() => {
      this.#running = false
      if (this.#again) { this.#again = false; this.#reconcile() }
    })
  }
}
