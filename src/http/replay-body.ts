// A request body that a retry can send again: the first `limit` bytes are kept while they flow to
// the first attempt; a body larger than that is never replayed (and then costs no memory).
import { PassThrough, type Readable } from 'node:stream'
import { constants as h2c } from 'node:http2'

export class ReplayBody {
  readonly #source: Readable
  readonly #limit: number
  #chunks: Buffer[] = []
  #size = 0
  #overflow = false
  #ended = false
  #current: PassThrough | undefined

  constructor (source: Readable, limit: number) {
    this.#source = source
    this.#limit = limit
    source.on('data', (chunk: Buffer) => {
      if (!this.#overflow) {
        this.#size += chunk.length
        if (this.#size > this.#limit) { this.#overflow = true; this.#chunks = [] } else this.#chunks.push(chunk)
      }
      const current = this.#current
      if (current !== undefined && !current.write(chunk)) {
        source.pause()
        current.once('drain', () => { if (this.#current === current) source.resume() })
      }
    })
    source.once('end', () => {
      // node ends a reset h2 stream too; a cut-off body must never look whole to the next hop.
      const rst = (source as { rstCode?: number }).rstCode
      if (rst !== undefined && rst !== h2c.NGHTTP2_NO_ERROR) { this.#current?.destroy(); return }
      this.#ended = true
      this.#current?.end()
    })
  }

  /** Could another attempt get the whole body? */
  get replayable (): boolean { return !this.#overflow }

  /** The body for the next attempt, or undefined when it can no longer be replayed. */
  next (): Readable | undefined {
    if (this.#current !== undefined && this.#overflow) return undefined
    const previous = this.#current
    const stream = new PassThrough({ highWaterMark: 64 * 1024 })
    this.#current = stream
    if (previous !== undefined) {
      previous.removeAllListeners('drain')
      previous.destroy()
    }
    for (const c of this.#chunks) stream.write(c)
    if (this.#ended) stream.end()
    else this.#source.resume()
    return stream
  }
}
