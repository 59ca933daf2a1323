// A request body that a retry can send again: the first `limit` bytes are kept while they flow to
// the first attempt; a body larger than that is never replayed (and then costs no memory).
import { PassThrough, type Readable, type Writable } from 'node:stream'
import { endedWhole } from './body-end.ts'

/**
 * The caller is answered and no attempt will read its body again: the rest is read and dropped, not
 * left paused behind a dead attempt's stream (its request would never end: in flight for good).
 */
export function dropRest (body: Readable | ReplayBody | null): void {
  if (body instanceof ReplayBody) body.discard()
  else if (body !== null) { body.unpipe(); body.resume() }
}

export class ReplayBody {
  readonly #source: Readable
  readonly #limit: number
  #chunks: Buffer[] = []
  #size = 0
  #overflow = false
  #ended = false
  /** Where this attempt's copy goes: a PassThrough of ours (next()), or the upstream stream itself (relayTo()). */
  #current: Writable | undefined
  #ownsCurrent = false
  /** Attempts the body was handed to: only the first may take a body that has outgrown the limit. */
  #attempts = 0
  /** The 'drain' listener this body put on #current while the source waits for it. */
  #onDrain: (() => void) | undefined

  constructor (source: Readable, limit: number) {
    this.#source = source
    this.#limit = limit
    source.on('data', (chunk: Buffer) => {
      if (!this.#overflow) {
        this.#size += chunk.length
        if (this.#size > this.#limit) { this.#overflow = true; this.#chunks = [] } else this.#chunks.push(chunk)
      }
      const current = this.#current
      if (current !== undefined && !current.write(chunk) && this.#onDrain === undefined) {
        source.pause()
        this.#onDrain = () => { this.#onDrain = undefined; source.resume() }
        current.once('drain', this.#onDrain)
      }
    })
    source.once('end', () => {
      // node ends a reset h2 stream too; a cut-off body must never look whole to the next hop. Our
      // own copy is destroyed; an upstream stream is left to the attempt, cancelled when the caller's
      // stream closes.
      if (!endedWhole(source)) { if (this.#ownsCurrent) this.#current?.destroy(); return }
      this.#ended = true
      this.#current?.end()
    })
  }

  /** Could another attempt get the whole body? */
  get replayable (): boolean { return !this.#overflow }

  /** The body for the next attempt as a stream of its own (undici reads one), or undefined when it can no longer be replayed. */
  next (): Readable | undefined {
    if (this.#attempts > 0 && this.#overflow) return undefined
    const stream = new PassThrough({ highWaterMark: 64 * 1024 })
    this.#switchTo(stream, true)
    return stream
  }

  /**
   * The body for the next attempt written straight into `dest` (an h2 stream): no stream of our own
   * in between, which every gRPC call with retries paid for. Only while `replayable`, or first.
   */
  relayTo (dest: Writable): void {
    if (this.#attempts > 0 && this.#overflow) throw new Error('relayTo: the body is too large to be sent again')
    this.#switchTo(dest, false)
  }

  /**
   * An attempt failed and another follows after a backoff: nothing is read meanwhile (the caller's
   * flow control holds the rest), so the kept copy cannot outgrow the limit between the retry
   * decision, taken while it was `replayable`, and the attempt that replays it.
   */
  hold (): void {
    this.#stopWaitingForDrain()
    this.#source.pause()
  }

  /** No attempt follows (the caller is answered without one): the rest of the body is read and dropped. */
  discard (): void {
    this.#release()
    this.#overflow = true
    this.#chunks = []
    if (!this.#ended) this.#source.resume()
  }

  #switchTo (dest: Writable, owned: boolean): void {
    this.#release()
    this.#attempts++
    this.#current = dest
    this.#ownsCurrent = owned
    for (const c of this.#chunks) dest.write(c)
    if (this.#ended) dest.end()
    else this.#source.resume()
  }

  /** The last attempt's copy is let go: its stream (destroyed if ours) no longer receives the body. */
  #release (): void {
    this.#stopWaitingForDrain()
    if (this.#ownsCurrent) this.#current?.destroy()
    this.#current = undefined
  }

  #stopWaitingForDrain (): void {
    if (this.#onDrain !== undefined) this.#current?.removeListener('drain', this.#onDrain)
    this.#onDrain = undefined
  }
}
