// HTTP test helpers: an app behind a `web` sidecar, a `client` sidecar in front of the caller, and
// real clients (curl, raw sockets) whose output the tests read the way a user would.
import { execFile } from 'node:child_process'
import { once } from 'node:events'
import net from 'node:net'
import { pairSpec, startMesh, type SidecarProcess, type Teardown } from './mesh.ts'

export { startApp } from './apps.ts'

/**
 * Two sidecars (pairSpec): `client` (the caller's; use its outbound port) and `web` (service `web:80`)
 * in front of the app on `appPort`. Returns the client sidecar.
 */
export async function startPair (t: Teardown, appPort: number, env: Record<string, string> = {}): Promise<SidecarProcess> {
  const mesh = await startMesh(t, pairSpec(appPort), { env })
  return mesh.sidecar('client')
}

export interface CurlResult {
  readonly code: number | null
  readonly status: number
  /** Header lines of the final response, names lower-cased, in order (repeats kept). */
  readonly headers: Array<[string, string]>
  /** Every status line curl printed, interim (1xx) ones included. */
  readonly statusLines: string[]
  readonly body: Buffer
  readonly stderr: string
}

/** Runs curl with `-sS -i` in a clean environment (no *_proxy variables leak in) and parses its output. */
export async function curl (args: string[]): Promise<CurlResult> {
  return new Promise((resolve, reject) => {
    execFile('curl', ['-sS', '-i', ...args], { encoding: 'buffer', maxBuffer: 256 * 1024 * 1024, env: { PATH: process.env.PATH }, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null
      if (err !== null && code === null) { reject(err); return }
      const parsed = parseResponses(stdout)
      resolve({ code, ...parsed, stderr: stderr.toString() })
    })
  })
}

/** Splits `curl -i` output (or raw HTTP/1.1 bytes) into header blocks; 1xx blocks are skipped over. */
export function parseResponses (raw: Buffer): Omit<CurlResult, 'code' | 'stderr'> {
  let rest = raw
  const statusLines: string[] = []
  for (;;) {
    const end = rest.indexOf('\r\n\r\n')
    if (end < 0) return { status: 0, headers: [], statusLines, body: rest }
    const lines = rest.subarray(0, end).toString('latin1').split('\r\n')
    statusLines.push(lines[0])
    rest = rest.subarray(end + 4)
    const status = Number(lines[0].split(' ')[1])
    if (status >= 100 && status < 200) continue
    const headers = lines.slice(1).map((l): [string, string] => {
      const i = l.indexOf(':')
      return [l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim()]
    })
    return { status, headers, statusLines, body: rest }
  }
}

export function header (r: { headers: Array<[string, string]> }, name: string): string | undefined {
  return r.headers.find(([n]) => n === name)?.[1]
}

/** Writes raw bytes on a fresh connection and collects everything until the peer closes (or `ms`). */
export async function rawExchange (port: number, bytes: string | Buffer, ms = 5_000): Promise<Buffer> {
  const socket = net.connect(port, '127.0.0.1')
  const chunks: Buffer[] = []
  socket.on('data', (c: Buffer) => chunks.push(c))
  socket.on('error', () => { /* a reset after the answer is fine; the bytes are what we check */ })
  socket.write(bytes)
  const timer = setTimeout(() => socket.destroy(), ms)
  await once(socket, 'close')
  clearTimeout(timer)
  return Buffer.concat(chunks)
}
