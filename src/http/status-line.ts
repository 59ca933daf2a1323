// An HTTP/1.1 response head written by hand, for sockets node's HTTP server has handed over
// (CONNECT, Upgrade, a client error) where no ServerResponse exists.
import { STATUS_CODES } from 'node:http'
import type { Headers } from './headers.ts'

export function statusLine (status: number, headers: Headers): string {
  let out = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Status'}\r\n`
  for (const [name, value] of Object.entries(headers)) {
    for (const v of Array.isArray(value) ? value : [value]) out += `${name}: ${v}\r\n`
  }
  return out + '\r\n'
}
