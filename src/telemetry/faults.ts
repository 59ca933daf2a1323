// What a role does with an error nothing caught. A known, harmless one (a connection the peer tore
// down under us) is logged and counted, and the process keeps serving. Anything else means a state
// nobody planned for: the error is logged with its stack and counted, the process drains (in-flight
// requests may finish) and exits non-zero, so the kubelet or whoever runs it restarts it clean.
// Envoy and Linkerd do the same rather than serve on in an unknown state.
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import { Counter } from './prom.ts'

/** Errors of a connection that already went away: nothing of the process's own state is in doubt. */
export const HARMLESS_CODES: ReadonlySet<string> = new Set([
  'ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ETIMEDOUT', 'ENOTCONN',
  'ERR_STREAM_PREMATURE_CLOSE', 'ERR_STREAM_DESTROYED', 'ERR_STREAM_WRITE_AFTER_END',
  'ERR_HTTP2_STREAM_ERROR', 'ERR_HTTP2_STREAM_CANCEL', 'ERR_HTTP2_INVALID_STREAM', 'ERR_HTTP2_GOAWAY_SESSION', 'ERR_HTTP2_SESSION_ERROR',
])

export type FaultOutcome = 'survived' | 'fatal'

export interface FaultPolicy {
  readonly log: Logger
  readonly count: (outcome: FaultOutcome) => void
  /** Stop accepting, let in-flight work finish, then stop (the role's own shutdown). */
  readonly drain: (why: string) => Promise<void>
}

export interface Faults {
  /** An unplanned error was seen: the role must exit non-zero once drained. */
  readonly fatal: boolean
}

export function watchUnexpectedErrors (processLike: NodeJS.EventEmitter, policy: FaultPolicy): Faults {
  const state = { fatal: false }
  processLike.on('uncaughtException', (err: unknown, origin: string) => {
    const code = (err as NodeJS.ErrnoException | undefined)?.code
    if (code !== undefined && HARMLESS_CODES.has(code)) {
      policy.count('survived')
      policy.log.warn({ err, origin }, `an error nothing handled (${code}) on a connection that is gone; serving on`)
      return
    }
    policy.count('fatal')
    if (state.fatal) {
      policy.log.error({ err, origin }, 'another unexpected error while draining')
      return
    }
    state.fatal = true
    policy.log.fatal({ err, origin }, 'unexpected error: draining, then exiting with code 1 to be restarted in a known state')
    void policy.drain('unexpected error')
  })
  return state
}

/** remora_unexpected_errors_total, the same in every role's registry. */
export function unexpectedErrorsCounter (registry: Registry): Counter<'outcome'> {
  return new Counter({
    name: 'remora_unexpected_errors_total',
    help: 'Errors nothing handled: survived (a connection already gone) or fatal (the process drains and exits 1).',
    labelNames: ['outcome'] as const,
    registers: [registry],
  })
}
