// The control plane's Kubernetes source: Service, EndpointSlice and Pod informers → the catalog, per Service.
// This wires the informers (kube-informer.ts) to the index that turns what they see into catalog entries (kube-index.ts).
import type { Logger } from 'pino'
import type { Catalog, CatalogSource } from './catalog.ts'
import { KubeIndex, slimPod, type KubeIndexOptions } from './kube-index.ts'
import { KubeInformers, type KubeInformerOptions, type KubeResource } from './kube-informer.ts'

export type { AnnotatedKind } from './kube-index.ts'
export type { KubeResource, KubeSourceErrorKind } from './kube-informer.ts'

export interface KubernetesSourceOptions extends KubeInformerOptions, KubeIndexOptions {}

export class KubernetesSource implements CatalogSource {
  readonly name = 'kubernetes'
  readonly #log: Logger
  readonly #index: KubeIndex
  readonly #informers: KubeInformers

  constructor (options: KubernetesSourceOptions) {
    this.#log = options.log
    this.#index = new KubeIndex(options)
    // Pods are slimmed as they arrive: the informers' cache holds every pod in the cluster (or namespaces).
    this.#informers = new KubeInformers<KubeResource>(options, { pods: slimPod }, (resource, obj, deleted) => this.#index.record(resource, obj, deleted))
  }

  async start (catalog: Catalog): Promise<void> {
    catalog.source = this.name
    await this.#informers.start()
    // First full view: every Service at once, then the catalog may answer watches.
    this.#index.publishAll(catalog, this.name)
    catalog.markSynced()
    this.#log.info({ services: this.#index.serviceCount, entries: catalog.size }, 'Kubernetes source synced')
  }

  async stop (): Promise<void> {
    // The index first: nothing the informers still deliver while they stop reaches the catalog.
    this.#index.stop()
    await this.#informers.stop()
  }
}
