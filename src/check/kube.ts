// remora check's view of the API server: plain JSON GETs and POSTs, authenticated as the kubeconfig says, each with
// a timeout. Raw JSON rather than client-node's typed APIs: a check reads a few fields and must not fail on the rest.
import { existsSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { HttpMethod, KubeConfig, RequestContext } from '@kubernetes/client-node'
import { fetch } from 'undici'

/** A JSON object as the API server sends one. */
export type Json = Record<string, unknown>

export const isJson = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v)

/** An answer of the API server: its status, the body as text, and as JSON when it is an object. */
export interface ApiResponse { readonly status: number, readonly text: string, readonly body: Json }

/** The API server could not be asked: no kubeconfig, no connection, a timeout. */
export class Unreachable extends Error {}

/** What a kubeconfig names, or why there is none. */
export type Loaded = { readonly kc: KubeConfig, readonly server: string } | { readonly error: string }

/**
 * `file` (--kubeconfig), else KUBECONFIG, ~/.kube/config or the in-cluster service account, as kubectl looks.
 * With none of these, client-node quietly falls back to http://localhost:8080: that is reported as no configuration.
 */
export function loadKubeConfig (file: string | undefined, env: NodeJS.ProcessEnv = process.env): Loaded {
  const kc = new KubeConfig()
  try {
    if (file !== undefined) {
      if (!existsSync(file)) return { error: `the kubeconfig ${file} (--kubeconfig) does not exist` }
      kc.loadFromFile(file)
    } else {
      const configured = env.KUBECONFIG !== undefined || env.KUBERNETES_SERVICE_HOST !== undefined || existsSync(join(homedir(), '.kube', 'config'))
      if (!configured) return { error: 'no Kubernetes cluster configured: set KUBECONFIG, give --kubeconfig, or create ~/.kube/config (kubectl config view should show your cluster)' }
      kc.loadFromDefault()
    }
  } catch (err) {
    return { error: `cannot load the kubeconfig: ${(err as Error).message.split('\n')[0]}` }
  }
  const cluster = kc.getCurrentCluster()
  if (cluster === null) return { error: 'the kubeconfig has no current cluster: kubectl config use-context <context>' }
  return { kc, server: cluster.server }
}

export class KubeClient {
  readonly server: string
  readonly #kc: KubeConfig
  readonly #timeoutMs: number

  constructor (kc: KubeConfig, server: string, timeoutMs: number) {
    this.#kc = kc
    this.server = server
    this.#timeoutMs = timeoutMs
  }

  get (path: string, query: Record<string, string> = {}): Promise<ApiResponse> { return this.#request(HttpMethod.GET, path, query, undefined) }

  create (path: string, body: Json): Promise<ApiResponse> { return this.#request(HttpMethod.POST, path, {}, body) }

  async #request (method: HttpMethod, path: string, query: Record<string, string>, body: Json | undefined): Promise<ApiResponse> {
    const url = new URL(this.server.replace(/\/$/, '') + path)
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v)
    const ctx = new RequestContext(url.toString(), method)
    let text: string
    let status: number
    try {
      await this.#kc.applySecurityAuthentication(ctx)
      const res = await fetch(url, {
        method,
        headers: { ...ctx.getHeaders(), ...(body !== undefined && { 'content-type': 'application/json' }), accept: 'application/json, */*' },
        body: body === undefined ? undefined : JSON.stringify(body),
        dispatcher: ctx.getDispatcher(),
        signal: AbortSignal.timeout(this.#timeoutMs),
      })
      status = res.status
      text = await res.text()
    } catch (err) {
      const e = err as Error & { cause?: { code?: string, message?: string } }
      const why = e.name === 'TimeoutError' ? `no answer within ${this.#timeoutMs} ms` : e.cause?.code ?? e.cause?.message ?? e.message
      throw new Unreachable(`${method} ${url.origin}${path}: ${why}`, { cause: err })
    }
    let parsed: unknown
    try { parsed = JSON.parse(text) } catch { parsed = undefined }
    return { status, text, body: isJson(parsed) ? parsed : {} }
  }
}

/** The message of a Status the API server answered with, else the HTTP status. */
export function statusMessage (r: ApiResponse): string {
  return typeof r.body.message === 'string' ? `${r.status} ${r.body.message}` : `HTTP ${r.status}`
}

/** A field deep in a JSON object, or undefined. */
export function field (o: unknown, ...path: Array<string | number>): unknown {
  let v: unknown = o
  for (const p of path) {
    if (typeof p === 'number') v = Array.isArray(v) ? v[p] : undefined
    else v = isJson(v) ? v[p] : undefined
  }
  return v
}

export const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined)
export const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined)
export const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : [])
