// The proxy answers a request itself: the reason goes on the access record, the caller gets the
// catalog's answer (HTTP status and body, or gRPC trailers-only), and an unread body is drained.
import type { ProxyErrorReason } from '../errors.ts'
import type { Exchange } from './exchange.ts'
import { respondError, type ResponseSink } from './response-sink.ts'

export function refuse (ex: Exchange, sink: ResponseSink, why: ProxyErrorReason, detail: string): void {
  ex.record.error = why.reason
  respondError(sink, why, { grpc: ex.grpc, detail })
  ex.body?.resume()
}
