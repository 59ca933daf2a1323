// A grpc-js Echo server whose unary handler each test chooses, and a client on ONE channel through
// a sidecar's outbound listener in h2c mode (the service named in :authority).
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import { freePort, type SidecarProcess, type Teardown } from './mesh.ts'

export interface EchoRequest { message?: string, delayMs?: number }
export interface EchoReply { message: string }
export type UnaryHandler = (call: grpc.ServerUnaryCall<Required<EchoRequest>, EchoReply>, callback: grpc.sendUnaryData<EchoReply>) => void

export interface EchoClient extends grpc.Client {
  unary (req: EchoRequest, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, value?: EchoReply) => void): grpc.ClientUnaryCall
}

const PROTO = new URL('../fixtures/echo.proto', import.meta.url).pathname
const Echo = (grpc.loadPackageDefinition(protoLoader.loadSync(PROTO, { defaults: true })) as unknown as {
  remora: { test: { Echo: grpc.ServiceClientConstructor } }
}).remora.test.Echo

/** Starts a server on a free port answering Unary with `unary` (`options`: e.g. interceptors); shut down at teardown. */
export async function startEchoServer (t: Teardown, unary: UnaryHandler, options: grpc.ServerOptions = {}): Promise<{ port: number, server: grpc.Server }> {
  const port = await freePort()
  const server = new grpc.Server(options)
  const unimplemented = (_call: unknown, cb?: grpc.sendUnaryData<EchoReply>): void => { cb?.({ code: grpc.status.UNIMPLEMENTED }) }
  server.addService(Echo.service, { unary, serverStream: unimplemented, clientStream: unimplemented, bidi: unimplemented })
  await new Promise<void>((resolve, reject) => {
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err) => { if (err !== null) reject(err); else resolve() })
  })
  t.teardown(() => { server.forceShutdown() })
  return { port, server }
}

/** One channel to the sidecar's outbound listener, h2c, with `authority` as :authority; closed at teardown. */
export function echoClient (t: Teardown, sidecar: SidecarProcess, authority: string): EchoClient {
  const client = new Echo(`127.0.0.1:${sidecar.ports.outbound}`, grpc.credentials.createInsecure(), {
    'grpc.default_authority': authority,
    'grpc.enable_http_proxy': 0,
  }) as unknown as EchoClient
  t.teardown(() => client.close())
  return client
}

export function unary (client: EchoClient, req: EchoRequest, opts: grpc.CallOptions = {}): Promise<{ err: grpc.ServiceError | null, reply?: EchoReply, ms: number }> {
  const started = performance.now()
  return new Promise((resolve) => {
    client.unary(req, new grpc.Metadata(), opts, (err, reply) => resolve({ err, reply, ms: performance.now() - started }))
  })
}
