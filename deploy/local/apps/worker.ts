// Demo app "worker": consumes greetings from RabbitMQ and thanks each sender through greeter over
// gRPC. Trace context travels in the message headers (as W3C/B3 headers do over HTTP), so the
// greeter call joins the trace of the web request that published the message.
import amqp from 'amqplib'
import { credentials, loadPackageDefinition, Metadata, type Client, type ServiceError } from '@grpc/grpc-js'
import { loadSync } from '@grpc/proto-loader'

interface HelloReply { message: string, served_by: string }
type GreeterClient = Client & { SayHello: (req: { name: string }, md: Metadata, cb: (err: ServiceError | null, reply: HelloReply) => void) => void }
type GreeterCtor = new (target: string, creds: ReturnType<typeof credentials.createInsecure>) => GreeterClient

/** The same trace headers web forwards; here they arrive as AMQP message headers. */
export const TRACE_HEADERS = ['traceparent', 'tracestate', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-parentspanid', 'x-b3-sampled', 'x-b3-flags']
export const QUEUE = process.env.QUEUE ?? 'greetings'

const url = process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672'
const greeterTarget = process.env.GREETER ?? 'dns:///greeter.demo:50051'
const pkg = loadPackageDefinition(loadSync(new URL('./greeter.proto', import.meta.url).pathname, { keepCase: true })) as unknown as { demo: { Greeter: GreeterCtor } }
const greeter = new pkg.demo.Greeter(greeterTarget, credentials.createInsecure())

const conn = await amqp.connect(url)
const channel = await conn.createChannel()
await channel.assertQueue(QUEUE, { durable: false })
await channel.prefetch(16)
await channel.consume(QUEUE, (msg) => {
  if (msg === null) return
  const md = new Metadata()
  const headers = msg.properties.headers ?? {}
  for (const name of TRACE_HEADERS) {
    const value: unknown = headers[name]
    if (typeof value === 'string') md.set(name, value)
  }
  const name = msg.content.toString('utf8')
  greeter.SayHello({ name: `${name} (from the queue)` }, md, (err: ServiceError | null, reply: HelloReply) => {
    if (err !== null) {
      console.log(`worker: greeter failed for ${name}: ${err.details} (code ${err.code}); the message goes back to the queue`)
      channel.nack(msg, false, true)
      return
    }
    console.log(`worker: ${reply.message} ${reply.served_by}`)
    channel.ack(msg)
  })
})
console.log(`worker: consuming ${QUEUE} at ${url.replace(/\/\/[^@]*@/, '//')}, greeter at ${greeterTarget}`)
process.on('SIGTERM', () => { void conn.close().finally(() => process.exit(0)) })
