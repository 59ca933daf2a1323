// bench:control's handles on the simulation workers (sim-worker.ts children): start one, pinned if asked, and call it over IPC.
import { spawn, type ChildProcess } from 'node:child_process'
import { pinned } from '../procs.ts'
import type { Command } from './protocol.ts'

const WORKER = new URL('./sim-worker.ts', import.meta.url).pathname

export class SimWorker {
  readonly index: number
  readonly proc: ChildProcess
  readonly ready: Promise<void>
  #seq = 0
  readonly #pending = new Map<number, (m: Record<string, unknown>) => void>()

  constructor (index: number, cpus: string | undefined) {
    this.index = index
    const [cmd, args] = pinned(process.execPath, [WORKER], cpus)
    this.proc = spawn(cmd, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' })
    this.ready = new Promise((resolve, reject) => {
      this.#pending.set(0, () => resolve())
      this.proc.once('exit', (code) => reject(new Error(`simulation worker ${index} exited with ${code}`)))
    })
    this.proc.on('message', (raw) => {
      const m = raw as Record<string, unknown> & { id: number }
      const done = this.#pending.get(m.id)
      this.#pending.delete(m.id)
      done?.(m)
    })
  }

  get pid (): number { return this.proc.pid as number }

  /** Sends a command; resolves with the worker's answer to it. */
  call<T> (msg: Command): Promise<T> {
    const id = ++this.#seq
    return new Promise((resolve, reject) => {
      this.#pending.set(id, (m) => resolve(m as T))
      this.proc.send({ ...msg, id }, (err) => { if (err !== null) reject(err) })
    })
  }
}
