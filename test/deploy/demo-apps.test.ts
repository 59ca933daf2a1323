// The demo apps carry trace context across every hop they make: web forwards a request's
// traceparent to greeter (gRPC metadata) and into RabbitMQ (message headers); the worker takes it
// from the message to its own greeter call. Real RabbitMQ, real gRPC, real child processes.
import t from 'tap'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import amqp from 'amqplib'
import { loadPackageDefinition, Server, ServerCredentials, type ServerUnaryCall, type sendUnaryData } from '@grpc/grpc-js'
import { loadSync } from '@grpc/proto-loader'
import { eventually, freePort, ROOT } from '../harness/mesh.ts'

const APPS = join(ROOT, 'deploy/local/apps')
type ServiceDef = { service: Parameters<Server['addService']>[0] }

t.test('a traceparent reaches greeter from web directly and, through RabbitMQ, from the worker', async (t) => {
  const calls: Array<{ name: string, traceparent: unknown }> = []
  const pkg = loadPackageDefinition(loadSync(join(APPS, 'greeter.proto'), { keepCase: true })) as unknown as { demo: { Greeter: ServiceDef } }
  const server = new Server()
  server.addService(pkg.demo.Greeter.service, {
    SayHello (call: ServerUnaryCall<{ name: string }, unknown>, done: sendUnaryData<unknown>) {
      calls.push({ name: call.request.name, traceparent: call.metadata.get('traceparent')[0] })
      done(null, { message: `Hello, ${call.request.name}!`, served_by: 'the test' })
    },
    StreamHellos () {},
  })
  const greeterPort = await freePort()
  await new Promise<void>((resolve, reject) => server.bindAsync(`127.0.0.1:${greeterPort}`, ServerCredentials.createInsecure(), (err) => err === null ? resolve() : reject(err)))
  t.teardown(() => { server.forceShutdown() })

  const queue = `remora-demo-test-${process.pid}`
  const env = { ...process.env, RABBITMQ_URL: 'amqp://guest:guest@127.0.0.1:5672', QUEUE: queue, GREETER: `dns:///127.0.0.1:${greeterPort}`, grpc_proxy: '', http_proxy: '' }
  const webPort = await freePort()
  const start = (file: string, extra: Record<string, string> = {}): Promise<void> => {
    const proc = spawn(process.execPath, [join(APPS, file)], { env: { ...env, ...extra }, stdio: ['ignore', 'pipe', 'inherit'] })
    t.teardown(() => { proc.kill('SIGKILL') })
    return new Promise((resolve, reject) => {
      proc.stdout?.on('data', (d: Buffer) => { if (/consuming|HTTP\/1\.1 on/.test(String(d))) resolve() })
      proc.once('exit', (code) => reject(new Error(`${file} exited with ${code}`)))
    })
  }
  t.teardown(async () => {
    const conn = await amqp.connect(env.RABBITMQ_URL)
    const ch = await conn.createChannel()
    await ch.deleteQueue(queue)
    await conn.close()
  })
  await Promise.all([start('worker.ts'), start('web.ts', { PORT: String(webPort) })])

  const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
  const res = await fetch(`http://127.0.0.1:${webPort}/hello?name=ada`, { headers: { traceparent } })
  const body = await res.text()
  t.equal(res.status, 200, body)
  t.match(body, /queued the greeting for the worker/)
  await eventually(() => calls.length >= 2, 30_000, 'greeter called by web and by the worker')
  t.same(calls.map((c) => c.name).sort(), ['ada', 'ada (from the queue)'])
  t.same(calls.map((c) => c.traceparent), [traceparent, traceparent], 'both calls carry the request\'s trace context')
})
