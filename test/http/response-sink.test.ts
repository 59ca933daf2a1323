// H1Sink: an answer whose every Content-Length byte was sent is complete, even when the client
// closes before the upstream's end-of-stream arrives (it came as a separate frame across sidecars).
import t from 'tap'
import net from 'node:net'
import { once } from 'node:events'
import { H1Sink } from '../../src/http/response-sink.ts'
import { createHttp1Server } from '../../src/http/h1-server.ts'

async function serve (t: { teardown (fn: () => unknown): void }, handler: (sink: H1Sink) => void): Promise<number> {
  const server = createHttp1Server(5_000, 0)
  server.on('request', (_req, res) => handler(new H1Sink(res, { draining: false })))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return (server.address() as net.AddressInfo).port
}

/** A client that reads until it has `bodyBytes` of body, then closes the connection. */
async function readThenClose (port: number, bodyBytes: number): Promise<string> {
  const socket = net.connect(port, '127.0.0.1')
  socket.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n')
  let got = ''
  for await (const chunk of socket) {
    got += String(chunk)
    const body = got.split('\r\n\r\n')[1]
    if (body !== undefined && body.length >= bodyBytes) break
  }
  socket.destroy()
  return got
}

t.test('all Content-Length bytes written, client gone before the end: completed', async (t) => {
  let completed: boolean | undefined
  const closed = new Promise<void>((resolve) => {
    void serve(t, (sink) => {
      sink.onClose((c) => { completed = c; resolve() })
      sink.respond(200, { 'content-length': '5' }, false)
      sink.body.write('hello')
      // No finish(): the upstream's end-of-stream has not arrived when the client closes.
    }).then((port) => readThenClose(port, 5))
  })
  await closed
  t.equal(completed, true, 'the client had the whole answer: not counted as a reset')
})

t.test('a client gone halfway through the body: not completed', async (t) => {
  let completed: boolean | undefined
  const closed = new Promise<void>((resolve) => {
    void serve(t, (sink) => {
      sink.onClose((c) => { completed = c; resolve() })
      sink.respond(200, { 'content-length': '10' }, false)
      sink.body.write('hello')
    }).then((port) => readThenClose(port, 5))
  })
  await closed
  t.equal(completed, false, 'half an answer is a reset')
})
