// The process logger: pino JSON on stdout, flushed on exit.
import { pino, type Logger } from 'pino'
import type { LogLevel } from '../config/env.ts'

export type { Logger }

export function createLogger (level: LogLevel, name: string): Logger {
  return pino({
    level,
    base: { role: name, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  }, pino.destination({ sync: false }))
}
