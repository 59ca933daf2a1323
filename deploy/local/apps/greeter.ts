// Demo app "greeter": a plain gRPC server (@grpc/grpc-js) on 127.0.0.1:$PORT; knows nothing of the mesh.
import { loadPackageDefinition, Server, ServerCredentials, type ServerUnaryCall, type ServerWritableStream, type sendUnaryData } from '@grpc/grpc-js'
import { loadSync } from '@grpc/proto-loader'

interface HelloRequest { name: string, count: number }
interface HelloReply { message: string, served_by: string }
type ServiceDef = { service: Parameters<Server['addService']>[0] }

const port = Number(process.env.PORT ?? 18081)
const pkg = loadPackageDefinition(loadSync(new URL('./greeter.proto', import.meta.url).pathname, { keepCase: true })) as unknown as { demo: { Greeter: ServiceDef } }
const server = new Server()
server.addService(pkg.demo.Greeter.service, {
  SayHello (call: ServerUnaryCall<HelloRequest, HelloReply>, done: sendUnaryData<HelloReply>) {
    const caller = call.metadata.get('remora-client-id')[0] ?? 'a client'
    done(null, { message: `Hello, ${call.request.name || 'stranger'}!`, served_by: `greeter pid ${process.pid} (caller: ${String(caller)})` })
  },
  StreamHellos (call: ServerWritableStream<HelloRequest, HelloReply>) {
    const n = Math.min(call.request.count || 3, 100)
    for (let i = 1; i <= n; i++) call.write({ message: `Hello #${i}, ${call.request.name}!`, served_by: `greeter pid ${process.pid}` })
    call.end()
  },
})
server.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (err) => {
  if (err !== null) { console.error(`greeter: cannot listen on ${port}: ${err.message}`); process.exit(1) }
  console.log(`greeter: gRPC on 127.0.0.1:${port}`)
})
process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)))
