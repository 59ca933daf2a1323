// Endpoint source backed by the local mesh file: loads it, then reloads on change without a restart.
import { watch, type FSWatcher } from 'node:fs'
import { basename, dirname } from 'node:path'
import type { Logger } from 'pino'
import { readMeshFile, type MeshConfig } from '../config/mesh-file.ts'
import type { EndpointSource, EndpointTable } from './endpoint-table.ts'

export class MeshFileSource implements EndpointSource {
  readonly name: string
  readonly #file: string
  readonly #log: Logger
  readonly #onMesh: (mesh: MeshConfig) => void
  #watcher?: FSWatcher
  #timer?: NodeJS.Timeout
  #lastText = ''

  constructor (file: string, log: Logger, onMesh: (mesh: MeshConfig) => void = () => {}) {
    this.#file = file
    this.name = `file:${file}`
    this.#log = log
    this.#onMesh = onMesh
  }

  /** The first load must succeed; later bad edits are logged and the last good table stays. */
  async start (table: EndpointTable): Promise<void> {
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

  #load (table: EndpointTable, first: boolean): void {
    let mesh: MeshConfig
    try {
      mesh = readMeshFile(this.#file)
    } catch (err) {
      if (first) throw err
      this.#log.error({ file: this.#file, code: (err as { code?: string }).code }, `mesh file not reloaded, keeping version ${table.state.version}: ${(err as Error).message}`)
      return
    }
    const text = JSON.stringify(mesh.services)
    if (!first && text === this.#lastText) return
    this.#lastText = text
    this.#onMesh(mesh)
    table.replace(mesh.services, this.name)
    if (!first) this.#log.info({ file: this.#file, version: table.state.version, services: mesh.services.length }, 'mesh file reloaded')
  }
}
