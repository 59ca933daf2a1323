// Endpoint source backed by the local mesh file: loads it, then reloads on change without a restart.
import { watch, type FSWatcher } from 'node:fs'
import { basename, dirname } from 'node:path'
import type { Logger } from 'pino'
import { readMeshFile, type MeshConfig } from '../config/mesh-file.ts'
import type { Service } from '../mesh/service.ts'

/** Whatever holds the services the file lists: the sidecar's endpoint table, or the control plane's catalog. */
export interface ServiceSink { replace (services: readonly Service[], source: string): void }

export class MeshFileSource {
  readonly name: string
  readonly #file: string
  readonly #log: Logger
  readonly #onError: (kind: string) => void
  readonly #onMesh: (mesh: MeshConfig) => void
  #watcher?: FSWatcher
  #timer?: NodeJS.Timeout
  #lastText = ''
  #loads = 0

  constructor (file: string, log: Logger, onError: (kind: string) => void = () => {}, onMesh: (mesh: MeshConfig) => void = () => {}) {
    this.#file = file
    this.name = `file:${file}`
    this.#log = log
    this.#onError = onError
    this.#onMesh = onMesh
  }

  /** The first load must succeed; later bad edits are logged and the last good table stays. */
  async start (table: ServiceSink): Promise<void> {
    this.#load(table, true)
    // Watch the folder, not the file: editors and `kubectl cp` replace files by rename.
    this.#watcher = watch(dirname(this.#file), (_event, name) => {
      if (name !== null && name !== basename(this.#file)) return
      clearTimeout(this.#timer)
      this.#timer = setTimeout(() => this.#load(table, false), 50)
    })
    this.#watcher.on('error', (err) => this.#log.warn({ err, file: this.#file }, 'mesh file watch failed; changes will not be picked up'))
  }

  async stop (): Promise<void> {
    clearTimeout(this.#timer)
    this.#watcher?.close()
  }

  #load (table: ServiceSink, first: boolean): void {
    let mesh: MeshConfig
    try {
      mesh = readMeshFile(this.#file)
    } catch (err) {
      if (first) throw err
      this.#onError((err as { code?: string }).code ?? 'read')
      this.#log.error({ file: this.#file, code: (err as { code?: string }).code }, `mesh file not reloaded, keeping load ${this.#loads}: ${(err as Error).message}`)
      return
    }
    this.#onMesh(mesh)
    const text = JSON.stringify(mesh.services)
    if (!first && text === this.#lastText) return
    this.#lastText = text
    table.replace(mesh.services, this.name)
    this.#loads++
    if (!first) this.#log.info({ file: this.#file, load: this.#loads, services: mesh.services.length }, 'mesh file reloaded')
  }
}
