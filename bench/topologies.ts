// What each bench case runs: the app, remora sidecars (mesh file), nginx, HAProxy and the naive Node proxy.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { freePort, type AppProtocol } from '../test/harness/mesh.ts'
import { type Child, startChild, stopChild, waitForPort } from './procs.ts'
import { otlpSink, portsOf, startControl, startSidecars, writePairMesh, type Workload } from './sidecars.ts'

const BENCH = new URL('.', import.meta.url).pathname

export interface Pinning {
  loadgen?: string
  app?: string
  /** The first and second hop. */
  hop1?: string
  hop2?: string
}

export interface Env {
  tmp: string
  pin: Pinning
  appPort: number
  /** remora's entry point: the bundle built from the checkout below, or its src/cli.ts (--src). */
  cli: string
  /** The checkout that runs: the working tree, or a revision's (--rev). */
  root: string
  /** Extra node flags for one sidecar (e.g. --cpu-prof); `name` says which, for file names. */
  sidecarNodeArgs: (name: string) => string[]
}

export interface Running {
  /** Where the load generator connects. */
  port: number
  /** The Host / :authority the client sends (Host-header mode for the outbound sidecar). */
  host?: string
  /** Processes whose RSS and CPU the table reports, first hop first. */
  proxies: Array<{ label: string, child: Child }>
  stop (): Promise<void>
}

export async function startApp (tmp: string, cpus: string | undefined): Promise<{ child: Child, port: number }> {
  const port = await freePort()
  const child = startChild('app', process.execPath, [join(BENCH, 'app.ts'), String(port)], { cpus, logFile: join(tmp, 'app.log'), stdinPipe: true })
  await waitForPort(child, port)
  return { child, port }
}

export async function startNaive (env: Env): Promise<Running> {
  const port = await freePort()
  const child = startChild('naive', process.execPath, [join(BENCH, 'naive-proxy.ts'), String(port), String(env.appPort)], { cpus: env.pin.hop1, logFile: join(env.tmp, 'naive.log'), stdinPipe: true })
  await waitForPort(child, port)
  return { port, proxies: [{ label: 'naive', child }], stop: () => stopChild(child) }
}

let meshSeq = 0


/**
 * Two workloads: `client` (its outbound is where the load goes, `Host: web`) and `web` (the app's
 * sidecar; its inbound is the one-hop target). `hops` 1 starts only web's sidecar.
 */
export interface RemoraOptions {
  accessLog?: boolean
  secure?: 'mtls+tracing'
  /** Another app than the bench's HTTP/1.1 one (the gRPC case's). */
  app?: { port: number, protocol: AppProtocol }
}

export async function startRemora (env: Env, hops: 1 | 2, options: RemoraOptions = {}): Promise<Running> {
  const { accessLog = false, secure } = options
  const n = ++meshSeq
  const tokens = { client: `bench-client-token-${n}-0123456789abcdef`, web: `bench-web-token-${n}-0123456789abcdef` }
  // http1: an h2 client's requests still reach this HTTP/1.1-only app as HTTP/1.1.
  const app = options.app ?? { port: env.appPort, protocol: 'http1' }
  const mesh = await writePairMesh(join(env.tmp, `mesh-${n}`), app.port, { appProtocol: app.protocol, ...(secure === undefined ? {} : { tokens }) })
  // As a production mesh runs: certificates from a control plane, mTLS between the sidecars, and
  // 1 % of requests traced (parent-based, so both sidecars sample the same ones) to a local OTLP sink.
  const control = secure === undefined ? undefined : await startControl(env.cli, mesh.file, join(env.tmp, `control-${n}`), `control-${n}`)
  const sink = secure === undefined ? undefined : await otlpSink()
  const secureEnv: Record<string, string> = control === undefined || sink === undefined ? {} : {
    ...control.env,
    OTEL_EXPORTER_OTLP_ENDPOINT: sink.url,
    OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
    OTEL_TRACES_SAMPLER_ARG: '0.01',
  }
  // One hop: web's sidecar alone, its inbound port the target; two: the client's in front of it.
  const workloads: Workload[] = hops === 1 ? ['web'] : ['client', 'web']
  const sidecars = await startSidecars(mesh, workloads, (w) => ({
    cli: env.cli,
    name: `sidecar-${w}`,
    nodeArgs: env.sidecarNodeArgs(`${n}-remora-${hops}hop${accessLog ? '-log' : ''}-${w}`),
    cpus: w === 'client' || hops === 1 ? env.pin.hop1 : env.pin.hop2,
    logFile: join(env.tmp, `sidecar-${w}-${n}.log`),
    env: { REMORA_ACCESS_LOG: accessLog ? 'on' : 'off', REMORA_LOG_LEVEL: 'info', REMORA_SHUTDOWN_GRACE: '1s', ...secureEnv },
  }), 30_000).catch(async (err: unknown) => {
    if (control !== undefined) await stopChild(control.child)
    sink?.close()
    throw err
  })
  const stop = async (): Promise<void> => {
    await Promise.all(sidecars.map((c) => stopChild(c, 5000)))
    if (control !== undefined) await stopChild(control.child)
    sink?.close()
  }
  if (hops === 1) return { port: portsOf(mesh, 'web').inbound, proxies: [{ label: 'server sidecar', child: sidecars[0] }], stop }
  return {
    port: portsOf(mesh, 'client').outbound,
    host: 'web',
    proxies: [{ label: 'client sidecar', child: sidecars[0] }, { label: 'server sidecar', child: sidecars[1] }],
    stop,
  }
}

async function chain (env: Env, hops: 1 | 2, kind: 'nginx' | 'haproxy', h2: boolean, start: (name: string, listen: number, upstream: number, h2: boolean, cpus: string | undefined) => Child): Promise<Running> {
  const front = await freePort()
  const middle = hops === 2 ? await freePort() : env.appPort
  // The hop nearest the app starts first so the other finds its upstream listening.
  const started: Array<{ label: string, child: Child }> = []
  try {
    if (hops === 2) {
      const second = start(`${kind}-2`, middle, env.appPort, false, env.pin.hop2)
      started.push({ label: `${kind} hop 2`, child: second })
      await waitForPort(second, middle)
    }
    const first = start(`${kind}-1`, front, middle, h2, env.pin.hop1)
    started.unshift({ label: `${kind} hop 1`, child: first })
    await waitForPort(first, front)
  } catch (err) {
    await Promise.all(started.map((s) => stopChild(s.child)))
    throw err
  }
  return { port: front, proxies: started, stop: async () => { await Promise.all(started.map((s) => stopChild(s.child))) } }
}

export function startNginx (env: Env, hops: 1 | 2, h2 = false): Promise<Running> {
  return chain(env, hops, 'nginx', h2, (name, listen, upstream, h2, cpus) => {
    const dir = env.tmp
    const conf = join(dir, `${name}-${listen}.conf`)
    writeFileSync(conf, `# remora bench: ${name}, one worker, upstream keep-alive
worker_processes 1;
pid ${dir}/${name}-${listen}.pid;
error_log ${dir}/${name}-${listen}.error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/${name}-body;
  proxy_temp_path ${dir}/${name}-proxy;
  fastcgi_temp_path ${dir}/${name}-fastcgi;
  uwsgi_temp_path ${dir}/${name}-uwsgi;
  scgi_temp_path ${dir}/${name}-scgi;
  keepalive_requests 1000000;
  keepalive_timeout 65s;
  upstream up { server 127.0.0.1:${upstream}; keepalive 128; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:${listen}${h2 ? ' http2' : ''};
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
    }
  }
}
`)
    return startChild(name, 'nginx', ['-p', dir, '-c', conf, '-e', join(dir, `${name}-${listen}.error.log`), '-g', 'daemon off;'], { cpus, logFile: join(dir, `${name}-${listen}.log`) })
  })
}

/**
 * `tls`: TLS 1.3 between the two hops, both sides verifying certificates from one CA (what the
 * mTLS row of remora compares with); ECDSA P-256 keys, as remora's.
 */
export function startHaproxy (env: Env, hops: 1 | 2, h2 = false, tls = false): Promise<Running> {
  const pki = tls ? haproxyPki(env.tmp) : undefined
  return chain(env, hops, 'haproxy', h2, (name, listen, upstream, h2, cpus) => {
    const conf = join(env.tmp, `${name}-${listen}.cfg`)
    // In a two-hop chain the first hop's upstream is the second hop's listener.
    const toHop2 = pki !== undefined && name.endsWith('-1')
    const fromHop1 = pki !== undefined && name.endsWith('-2')
    writeFileSync(conf, `# remora bench: ${name}, one thread, server connections reused
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 65s
  timeout server 65s
  timeout http-keep-alive 65s
  http-reuse always
frontend fe
  bind 127.0.0.1:${listen}${h2 ? ' proto h2' : ''}${fromHop1 ? ` ssl crt ${pki.server} ca-file ${pki.ca} verify required ssl-min-ver TLSv1.3` : ''}
  default_backend be
backend be
  server app 127.0.0.1:${upstream}${toHop2 ? ` ssl crt ${pki.client} ca-file ${pki.ca} verify required ssl-min-ver TLSv1.3 sni str(web)` : ''}
`)
    return startChild(name, 'haproxy', ['-f', conf, '-db'], { cpus, logFile: join(env.tmp, `${name}-${listen}.log`) })
  })
}

/** A CA, a server and a client certificate for HAProxy's TLS hop (openssl), each key with its certificate in one PEM. */
function haproxyPki (tmp: string): { ca: string, server: string, client: string } {
  const dir = join(tmp, 'haproxy-pki')
  const run = (args: string[]): void => { execFileSync('openssl', args, { cwd: tmp, stdio: 'ignore' }) }
  mkdirSync(dir, { recursive: true })
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  run(['req', '-x509', ...ec, '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.pem'), '-days', '2', '-subj', '/CN=bench-ca'])
  const leaf = (name: string): string => {
    run(['req', ...ec, '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.csr`), '-subj', `/CN=${name}`])
    writeFileSync(join(dir, `${name}.ext`), `subjectAltName=DNS:web\nextendedKeyUsage=serverAuth,clientAuth\n`)
    run(['x509', '-req', '-in', join(dir, `${name}.csr`), '-CA', join(dir, 'ca.pem'), '-CAkey', join(dir, 'ca.key'), '-CAcreateserial', '-out', join(dir, `${name}.crt`), '-days', '2', '-extfile', join(dir, `${name}.ext`)])
    const pem = join(dir, `${name}.pem`)
    writeFileSync(pem, readFileSync(join(dir, `${name}.crt`), 'utf8') + readFileSync(join(dir, `${name}.key`), 'utf8'))
    return pem
  }
  return { ca: join(dir, 'ca.pem'), server: leaf('server'), client: leaf('client') }
}
