// The Kubernetes source's list client: one list of a resource over every page, as plain JSON objects.
import { HttpMethod, RequestContext, type KubeConfig } from '@kubernetes/client-node'
import { fetch } from 'undici'

const LIST_TIMEOUT_MS = 60_000

/** A JSON object as the API server sends one: not null, not an array. */
export const isJsonObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v)

interface ListPage { items: unknown[], resourceVersion: string, continue?: string }

/**
 * Lists `path` page by page, handing each item to `each` as its page arrives, and resolves to the list's
 * resourceVersion (where a watch starts). Raw JSON rather than client-node's typed list: the items are plain
 * objects like the watch's, and one malformed item cannot fail the whole list.
 */
export async function listAllPages (kc: KubeConfig, path: string, pageSize: number, signal: AbortSignal, each: (item: unknown) => void, selectors: Selectors = {}): Promise<string> {
  let resourceVersion: string
  let cont: string | undefined
  do {
    const page = await listPage(kc, path, pageSize, cont, signal, selectors)
    for (const item of page.items) each(item)
    resourceVersion = page.resourceVersion
    cont = page.continue
  } while (cont !== undefined)
  return resourceVersion
}

/** Which objects a list (and the watch after it) is about. */
export interface Selectors { readonly labelSelector?: string, readonly fieldSelector?: string }

/** One GET of a list, `limit` items from the `cont` token on, authenticated as the kubeconfig says. */
async function listPage (kc: KubeConfig, path: string, limit: number, cont: string | undefined, signal: AbortSignal, selectors: Selectors): Promise<ListPage> {
  const cluster = kc.getCurrentCluster()
  if (cluster === null) throw new Error('the kubeconfig has no current cluster')
  const url = new URL(cluster.server + path)
  if (selectors.labelSelector !== undefined) url.searchParams.set('labelSelector', selectors.labelSelector)
  if (selectors.fieldSelector !== undefined) url.searchParams.set('fieldSelector', selectors.fieldSelector)
  url.searchParams.set('limit', String(limit))
  if (cont !== undefined) url.searchParams.set('continue', cont)
  const ctx = new RequestContext(url.toString(), HttpMethod.GET)
  await kc.applySecurityAuthentication(ctx)
  const res = await fetch(url, { headers: ctx.getHeaders(), dispatcher: ctx.getDispatcher(), signal: AbortSignal.any([signal, AbortSignal.timeout(LIST_TIMEOUT_MS)]) })
  const text = await res.text()
  return listPageOf(path, res.status, res.statusText, text)
}

/** The page in a list response's body, or the error the informer expects for a failed list. */
function listPageOf (path: string, status: number, statusText: string, text: string): ListPage {
  let body: unknown
  try { body = JSON.parse(text) } catch { body = undefined }
  const b = isJsonObject(body) ? body : {}
  if (status !== 200) {
    // statusCode as client-node's errors carry it: the informer relists on 410.
    throw Object.assign(new Error(`GET ${path}: ${status} ${typeof b.message === 'string' ? b.message : statusText}`), { statusCode: status })
  }
  if (!Array.isArray(b.items) && b.items !== null) throw new Error(`GET ${path}: expected a list with items, got ${text.slice(0, 80)}`)
  const meta = isJsonObject(b.metadata) ? b.metadata : {}
  return {
    items: (b.items as unknown[] | null) ?? [],
    resourceVersion: typeof meta.resourceVersion === 'string' ? meta.resourceVersion : '',
    continue: typeof meta.continue === 'string' && meta.continue !== '' ? meta.continue : undefined,
  }
}
