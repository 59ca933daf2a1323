// Demo app "web": a plain HTTP/1.1 server that calls greeter over gRPC. Its only mesh awareness
// is the standard proxy variable (grpc_proxy) pointing at its own sidecar, as any app would set,
// and what every app in a traced mesh does: it forwards the trace headers it received to the
// calls it makes for that request, so the sidecars' spans join up into one trace.
import http from 'node:http'
import { credentials, loadPackageDefinition, Metadata, type Client, type ServiceError } from '@grpc/grpc-js'
import { loadSync } from '@grpc/proto-loader'

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
    res.writeHead(200, { 'content-type': 'text/plain' })
      .end(`${reply.message}\n  web pid ${process.pid} asked greeter over gRPC; ${reply.served_by}\n`)
  })
}).listen(port, '127.0.0.1', () => console.log(`web: HTTP/1.1 on 127.0.0.1:${port}, greeter at ${greeterTarget} via ${process.env.grpc_proxy ?? 'no proxy'}`))
process.on('SIGTERM', () => process.exit(0))
