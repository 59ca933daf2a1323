// ReplayBody: the copy of a request body that retries send again. Each attempt gets the whole body
// or none is replayed; a backoff reads nothing; a caller answered without another attempt is drained.
import t from 'tap'
import { PassThrough, Writable } from 'node:stream'
import { once } from 'node:events'
import { ReplayBody } from '../../src/http/replay-body.ts'

const KiB = 1024
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/** An attempt's upstream: collects what it is sent until it ends. */
function attempt (): { stream: Writable, bytes: () => number, ended: Promise<void> } {
  let bytes = 0
  const stream = new Writable({ write (chunk: Buffer, _enc, cb) { bytes += chunk.length; cb() } })
  return { stream, bytes: () => bytes, ended: once(stream, 'finish').then(() => {}) }
}

/** A caller whose first `sent` bytes reached attempt 1, which then failed. */
async function failedFirstAttempt (sent: number): Promise<{ caller: PassThrough, body: ReplayBody, first: ReturnType<typeof attempt> }> {
  const caller = new PassThrough()
  const body = new ReplayBody(caller, 64 * KiB)
  const first = attempt()
  body.relayTo(first.stream)
  caller.write(Buffer.alloc(sent))
  await settle()
  first.stream.destroy()
  return { caller, body, first }
}

t.test('a body that grows during a retry\'s backoff is not read until the retry: the replay stays whole', async (t) => {
  const { caller, body } = await failedFirstAttempt(60 * KiB)
  t.ok(body.replayable, 'within the limit when the first attempt fails: the retry is decided')
  body.hold()
  // The caller's next frame arrives during the backoff.
  caller.write(Buffer.alloc(16 * KiB))
  await settle()
  t.ok(body.replayable, 'nothing read during the backoff: still replayable when the retry starts')
  const second = attempt()
  t.doesNotThrow(() => body.relayTo(second.stream), 'the retry gets the body')
  caller.end()
  await second.ended
  t.equal(second.bytes(), 76 * KiB, 'the retry got all of it: the kept 60 KiB and what came after')
  t.notOk(body.replayable, 'and past the limit now, no third attempt would get it')
  t.equal(body.next(), undefined, 'a third attempt is refused the body')
})

t.test('a caller answered without another attempt is drained to its end, never left paused', async (t) => {
  const { caller, body, first } = await failedFirstAttempt(8 * KiB)
  body.hold()
  // A full read side while held: the caller's writes back up, as its flow control would.
  while (caller.write(Buffer.alloc(16 * KiB)));
  const ended = once(caller, 'end')
  body.discard()
  caller.end()
  await ended
  t.pass('the held body read to its end after discard()')
  t.equal(first.bytes(), 8 * KiB, 'the failed attempt got nothing more')
  t.notOk(body.replayable, 'nothing is kept for an attempt that will not come')
})

t.test('a body larger than the limit goes whole to the first attempt, and to no other', async (t) => {
  const caller = new PassThrough()
  const body = new ReplayBody(caller, 16 * KiB)
  const first = attempt()
  body.relayTo(first.stream)
  caller.end(Buffer.alloc(40 * KiB))
  await first.ended
  t.equal(first.bytes(), 40 * KiB)
  t.notOk(body.replayable)
  t.throws(() => body.relayTo(attempt().stream), /too large to be sent again/)
})

t.test('a second attempt through next() gets its own stream with the whole body', async (t) => {
  const caller = new PassThrough()
  const body = new ReplayBody(caller, 64 * KiB)
  const first = body.next()
  if (first === undefined) throw new Error('the first attempt must get the body')
  first.resume()
  caller.write('hello ')
  await settle()
  body.hold()
  caller.end('world')
  const second = body.next()
  if (second === undefined) throw new Error('a replayable body must be given to the retry')
  t.ok(first.destroyed, 'the first attempt\'s stream is let go')
  let text = ''
  for await (const c of second) text += String(c)
  t.equal(text, 'hello world')
})
