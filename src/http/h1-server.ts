// The HTTP/1.1 server behind both listeners: node's, with a response that counts its body bytes and
// the request-header timeout running.
import http from 'node:http'
import { headersTimeoutOptions, startHeadersTimeout } from './header-timeout.ts'

/**
 * node's response, counting the body bytes written through write(): H1Sink takes an answer whose
 * caller closed after every Content-Length byte for a complete one. A subclass, not write()
 * replaced on each response: a closure per request set on the response kept each request's objects
 * (request, response, sink, the upstream's) alive through young-generation GCs, so all of them were
 * promoted and the old space grew by ~1.1 MB per scavenge at 1,000 req/s, with 4 ms scavenges
 * instead of 0.3 ms (docs/performance.md).
 */
export class CountedResponse<Request extends http.IncomingMessage = http.IncomingMessage> extends http.ServerResponse<Request> {
  bodyBytes = 0

  override write (chunk: string | Uint8Array, ...rest: unknown[]): boolean {
    this.bodyBytes += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.byteLength
    return super.write(chunk, ...(rest as [BufferEncoding]))
  }
}

export type Http1Server = http.Server<typeof http.IncomingMessage, typeof CountedResponse>

/** `idleTimeoutMs`: a kept-alive connection's wait for its next request; `headersTimeoutMs`: 0 = none. */
export function createHttp1Server (idleTimeoutMs: number, headersTimeoutMs: number): Http1Server {
  const server = http.createServer<typeof http.IncomingMessage, typeof CountedResponse>({
    ServerResponse: CountedResponse,
    requireHostHeader: false,
    keepAliveTimeout: idleTimeoutMs,
    ...headersTimeoutOptions(headersTimeoutMs),
    requestTimeout: 0,
  })
  startHeadersTimeout(server)
  return server
}
