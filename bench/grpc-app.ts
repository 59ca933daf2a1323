// Bench gRPC app (run as a child): `node bench/grpc-app.ts <port>`: one unary method,
// /bench.Echo/Unary, answering each ~100-byte message with a ~100-byte message (bytes in, bytes out:
// no protobuf compilation; grpc-js frames them as any gRPC server does).
import { Server, ServerCredentials, type ServiceDefinition } from '@grpc/grpc-js'

export const UNARY_PATH = '/bench.Echo/Unary'
const ANSWER = Buffer.from('{"service":"web","message":"hello from the remora bench gRPC app","padding":"0123456789abcdefghij"}')

const identity = (b: Buffer): Buffer => b
const service: ServiceDefinition = {
  Unary: { path: UNARY_PATH, requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
}

if (import.meta.main) {
  const port = Number(process.argv[2])
  const server = new Server()
  server.addService(service, { Unary: (_call: unknown, callback: (err: null, answer: Buffer) => void) => callback(null, ANSWER) })
  server.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (err) => {
    if (err !== null) { console.error(err.message); process.exit(1) }
    console.log(`listening on ${port}`)
  })
  // The bench holds our stdin open; when it goes away (even killed), so do we.
  process.stdin.on('end', () => process.exit(0)).on('error', () => process.exit(0)).resume()
}

export { service as echoService }
