// Demo app "web": a plain HTTP/1.1 server that calls greeter over gRPC and, with RABBITMQ_URL set,
// also queues the greeting for the worker. Its only mesh awareness is the standard proxy variable
// (grpc_proxy) pointing at its own sidecar where nothing redirects traffic, and what every app in
// a traced mesh does: it forwards the trace headers it received to the calls it makes for that
// request (gRPC metadata, AMQP message headers), so the sidecars' spans join up into one trace.
import http from 'node:http'
import { credentials, loadPackageDefinition, Metadata, type Client, type ServiceError } from '@grpc/grpc-js'
import { loadSync } from '@grpc/proto-loader'
import amqp from 'amqplib'

interface HelloReply { message: string, served_by: string }
type GreeterClient = Client & { SayHello: (req: { name: string }, md: Metadata, cb: (err: ServiceError | null, reply: HelloReply) => void) => void }

/** W3C trace context and both B3 forms: whichever the caller sent goes on, unchanged. */
const TRACE_HEADERS = ['traceparent', 'tracestate', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-parentspanid', 'x-b3-sampled', 'x-b3-flags']

function traceMetadata (headers: http.IncomingHttpHeaders): Metadata {
  const md = new Metadata()
  for (const name of TRACE_HEADERS) {
    const value = headers[name]
    if (typeof value === 'string') md.set(name, value)
  }
  return md
}
type GreeterCtor = new (target: string, creds: ReturnType<typeof credentials.createInsecure>) => GreeterClient

const port = Number(process.env.PORT ?? 18080)
const greeterTarget = process.env.GREETER ?? 'dns:///greeter.demo:50051'
const pkg = loadPackageDefinition(loadSync(new URL('./greeter.proto', import.meta.url).pathname, { keepCase: true })) as unknown as { demo: { Greeter: GreeterCtor } }
const greeter = new pkg.demo.Greeter(greeterTarget, credentials.createInsecure())
const queue = process.env.QUEUE ?? 'greetings'
const rabbit = process.env.RABBITMQ_URL === undefined
  ? undefined
  : amqp.connect(process.env.RABBITMQ_URL).then(async (conn) => {
    const channel = await conn.createChannel()
    await channel.assertQueue(queue, { durable: false })
    return channel
  })
rabbit?.catch((err: Error) => console.log(`web: RabbitMQ unavailable (${err.message}); greetings are not queued`))

/** The greeting goes to the worker with the request's trace headers as message headers. */
async function enqueue (name: string, headers: http.IncomingHttpHeaders): Promise<boolean> {
  const channel = await rabbit?.catch(() => undefined)
  if (channel === undefined) return false
  const trace: Record<string, string> = {}
  for (const h of TRACE_HEADERS) if (typeof headers[h] === 'string') trace[h] = headers[h]
  return channel.sendToQueue(queue, Buffer.from(name), { headers: trace })
}

http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://web')
  if (url.pathname !== '/hello') {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('try /hello?name=you\n')
    return
  }
  const name = url.searchParams.get('name') ?? 'you'
  greeter.SayHello({ name }, traceMetadata(req.headers), (err, reply) => {
    if (err !== null) {
      res.writeHead(502, { 'content-type': 'text/plain' }).end(`web could not reach greeter: ${err.details} (code ${err.code})\n`)
      return
    }
    void enqueue(name, req.headers).then((queued) => {
      res.writeHead(200, { 'content-type': 'text/plain' })
        .end(`${reply.message}\n  web pid ${process.pid} asked greeter over gRPC; ${reply.served_by}\n${queued ? `  and queued the greeting for the worker (${queue})\n` : ''}`)
    })
  })
}).listen(port, process.env.HOST ?? '127.0.0.1', () => console.log(`web: HTTP/1.1 on 127.0.0.1:${port}, greeter at ${greeterTarget} via ${process.env.grpc_proxy ?? 'no proxy'}`))
process.on('SIGTERM', () => process.exit(0))
