// host:port and port numbers as users write them, checked with a message saying what is expected.
import type { HostPort } from '../mesh/host-port.ts'

export function parseHostPort (raw: string): HostPort {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]*)):(\d{1,5})$/.exec(raw.trim())
  if (m === null) throw new Error(`expected host:port (for example 127.0.0.1:15001), got "${raw}"`)
  const port = Number(m[3])
  if (port > 65535) throw new Error(`port ${port} is out of range 0-65535`)
  const host = m[1] ?? m[2]
  return Object.freeze({ host: host === '' ? '0.0.0.0' : host, port })
}

export function parsePort (raw: string): number {
  if (!/^\d{1,5}$/.test(raw.trim()) || Number(raw) < 1 || Number(raw) > 65535) {
    throw new Error(`expected a port number 1-65535, got "${raw}"`)
  }
  return Number(raw)
}
