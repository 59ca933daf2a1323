// The control plane's file source: the same mesh YAML a sidecar can read, served to every sidecar.
import type { Logger } from 'pino'
import { MeshFileSource } from '../discovery/file-source.ts'
import type { MeshConfig } from '../config/mesh-file.ts'
import type { Catalog, CatalogSource } from './catalog.ts'

export class FileCatalogSource implements CatalogSource {
  readonly name: string
  readonly #file: MeshFileSource

  /** `onMesh` sees every good load (the CA's bootstrap tokens come from it). */
  constructor (file: string, log: Logger, onError: (kind: string) => void = () => {}, onMesh: (mesh: MeshConfig) => void = () => {}) {
    this.#file = new MeshFileSource(file, log, onError, onMesh)
    this.name = this.#file.name
  }

  async start (catalog: Catalog): Promise<void> {
    await this.#file.start(catalog)
    catalog.markSynced()
  }

  stop (): Promise<void> { return this.#file.stop() }
}
