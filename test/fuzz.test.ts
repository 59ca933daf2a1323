// Issue 18, "What to build": a fuzz/corpus test. Thousands of malformed and hostile HTTP/1.1 requests
// and HTTP/2 frame sequences, each on its own raw connection, through a real sidecar pair (most to
// the client sidecar's outbound listener, a share to web's inbound listener) to a recording app.
// Asserts: no crash; nothing the proxy rejected reaches the app; every proxied request is logged
// once per sidecar; the in-flight gauge and open connections return to zero; requests on other
// connections keep working. The hand-written cases are test/fixtures/fuzz/corpus.json (add one for
// every bug found); the generated ones come from a seeded PRNG: FUZZ_SEED reproduces a run,
// FUZZ_CASES sets the number of generated HTTP/1.1 cases (HTTP/2: an eighth of it); FUZZ_DUMP=<prefix>
// writes both sidecars' logs.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { eventually, pairSpec, startMesh } from './harness/mesh.ts'
import { frame, hpack, PREFACE } from './harness/h2-frames.ts'
import { startApp } from './harness/http.ts'
import { metric } from './harness/metrics.ts'

const SEED = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 32)) >>> 0
const H1_CASES = Number(process.env.FUZZ_CASES ?? 2000)
const H2_CASES = Math.max(1, Math.floor(H1_CASES / 8))
const CONCURRENCY = 24
/** A connection the sidecar leaves open is given up on after this much quiet. */
const QUIET_MS = 250
const PROBE_EVERY = 50
t.comment(`FUZZ_SEED=${SEED} FUZZ_CASES=${H1_CASES} (rerun with the same values to reproduce)`)

/** mulberry32: a tiny deterministic PRNG. */
function mulberry32 (seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6D2B79F5) | 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}
const rand = mulberry32(SEED)
const int = (n: number): number => Math.floor(rand() * n)
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]

// ---- the app: records every request it receives by the token in its path ----------------------

const TOKEN = /fz-\d+-\d+-z/g
const received = new Map<string, number>()
const receivedDetail = new Map<string, { method: string, url: string, headers: http.IncomingHttpHeaders }>()
let untokened = 0
/** Requests the app received whole (their body ended): a streamed request cut off midway is not. */
const completed = new Set<string>()
function record (req: http.IncomingMessage): string[] {
  const tokens = (req.url ?? '').match(TOKEN) ?? []
  const fromHeaders = (String(req.headers['x-t'] ?? '')).match(TOKEN) ?? []
  const all = [...new Set([...tokens, ...fromHeaders])]
  if (all.length === 0 && !(req.url ?? '').includes('probe-')) untokened++
  for (const tok of all) {
    received.set(tok, (received.get(tok) ?? 0) + 1)
    receivedDetail.set(tok, { method: req.method ?? '', url: req.url ?? '', headers: req.headers })
  }
  return all
}
const app = await startApp(t, (req, res) => {
  const tokens = record(req)
  let done = false
  const answer = (): void => {
    if (done || res.destroyed) return
    done = true
    res.writeHead(200, { 'x-app': '1', 'x-fz-token': tokens.join(','), 'content-length': 2 })
    res.end('ok')
  }
  req.on('end', () => { for (const tok of tokens) completed.add(tok); answer() })
  req.on('error', () => {})
  req.resume()
  setTimeout(answer, 100)
})
// An upgrade or CONNECT reaching the app is recorded and answered (never a tunnel).
for (const ev of ['upgrade', 'connect'] as const) {
  app.server.on(ev, (req: http.IncomingMessage, socket: net.Socket) => {
    const tokens = record(req)
    socket.on('error', () => {})
    socket.end(`HTTP/1.1 200 OK\r\nx-app: 1\r\nx-fz-token: ${tokens.join(',')}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok`)
  })
}

// A connection HTTP/2 refused (GOAWAY after a malformed frame) is closed by the PING probe
// (transport/h2-server.ts): short timers here, so the test need not wait out the 10 s default.
const mesh = await startMesh(t, pairSpec(app.port), { env: { REMORA_REQUEST_HEADERS_TIMEOUT: '2s', REMORA_DOWNSTREAM_PING_INTERVAL: '1s', REMORA_DRAIN_TIMEOUT: '1s' } })
const client = mesh.sidecar('client')
const web = mesh.sidecar('web')

// ---- cases -------------------------------------------------------------------------------------

type Listener = 'outbound' | 'inbound'
interface Case {
  id: number
  cls: string
  name: string
  listener: Listener
  /** Written in this order, a few ms apart. */
  chunks: Buffer[]
  tokens: string[]
  h2: boolean
  /** HTTP/2 streams whose request is malformed (RFC 9113 §8.1.1): must never be forwarded. */
  malformed: string[]
}

let nextId = 0
const token = (id: number, n: number): string => `fz-${id}-${n}-z`

function expand (raw: string, id: number, listener: Listener): { text: string, tokens: string[] } {
  const tokens = new Set<string>()
  const text = raw
    .replace(/\{PIPELINE (\d+)\}/g, (_m, n: string) => Array.from({ length: Number(n) }, (_, i) => `GET /{T${i + 1}} HTTP/1.1\r\nHost: {HOST}\r\n\r\n`).join(''))
    .replace(/\{REP (\d+) (.)\}/g, (_m, n: string, c: string) => c.repeat(Number(n)))
    .replace(/\{HEADERS (\d+)\}/g, (_m, n: string) => Array.from({ length: Number(n) }, (_, i) => `X-H${i}: v\r\n`).join(''))
    .replace(/\{T(\d+)\}/g, (_m, n: string) => { const tok = token(id, Number(n)); tokens.add(tok); return tok })
    .replaceAll('{HOST}', 'web')
    .replaceAll('{ADMIN}', String(listener === 'outbound' ? client.ports.admin : web.ports.admin))
  return { text, tokens: [...tokens] }
}

function h1Case (cls: string, name: string, raw: string, listener: Listener, split = false): Case {
  const id = nextId++
  const { text, tokens } = expand(raw, id, listener)
  const bytes = Buffer.from(text, 'latin1')
  const chunks: Buffer[] = []
  if (split && bytes.length > 1) {
    let at = 0
    const least = Math.ceil(bytes.length / 200)
    while (at < bytes.length) { const n = Math.max(least, 1 + int(64)); chunks.push(bytes.subarray(at, at + n)); at += n }
  } else chunks.push(bytes)
  return { id, cls, name, listener, chunks, tokens, h2: false, malformed: [] }
}

interface CorpusEntry { class: string, name: string, raw: string }
const corpus = JSON.parse(readFileSync(new URL('fixtures/fuzz/corpus.json', import.meta.url), 'utf8')) as CorpusEntry[]

// Generated HTTP/1.1: a valid request built from parts, then structural and byte-level mutations.
const TE_VALUES = ['chunked', 'xchunked', ' chunked', 'chunked, identity', 'identity', 'Chunked', 'chunked\t', 'gzip, chunked', 'chunked,', ',chunked', 'chunk\u0000ed']
const CL_VALUES = ['0', '5', '-1', '5, 6', '99999999999999999999', ' 5', '5 ', '0x5', '', '+5', '4294967296']
const NAMES = ['Transfer-Encoding', 'Content-Length', 'Host', 'Connection', 'Upgrade', 'Expect', 'Transfer_Encoding', 'Content_Length', 'TE', 'Trailer', 'Remora-Attempt', 'Remora-Proxy-Error', 'Proxy-Connection', 'Keep-Alive', 'X-Forwarded-For', 'HTTP2-Settings', 'X-A']
const VALUES = ['chunked', 'close', 'keep-alive', 'upgrade', 'h2c', 'websocket', '100-continue', 'trailers', '1', 'web', 'evil', '', ' ', 'a\u0000b', 'a\rb', 'a\u007fb', '\u00ff', 'x'.repeat(9000)]
const METHODS = ['GET', 'POST', 'PUT', 'HEAD', 'OPTIONS', 'DELETE', 'PATCH', 'CONNECT', 'TRACE', 'PRI', 'get', 'FOO', 'G\u0000T']
const VERSIONS = ['HTTP/1.1', 'HTTP/1.0', 'HTTP/1.1', 'HTTP/1.1', 'HTTP/2.0', 'HTTP/0.9', 'HTTP/1.2', 'http/1.1', '']
const EOLS = ['\r\n', '\r\n', '\r\n', '\n', '\r', '\r\r\n', '\n\r']

function generateH1 (listener: Listener): Case {
  const ops: string[] = []
  const method = rand() < 0.7 ? pick(['GET', 'POST']) : pick(METHODS)
  if (method !== 'GET' && method !== 'POST') ops.push('method')
  const form = rand()
  let target = '/{T1}'
  if (form < 0.1) { target = `${pick(['http', 'https', 'ftp', 'file', 'ws', 'HTTP', 'h2c', 'x'])}://${pick(['web', 'web:80', 'web@evil', '', '[::1]', '127.0.0.1:1'])}/{T1}`; ops.push('absolute-form') } else if (form < 0.13) { target = pick(['*', 'web:80', '//{T1}', '/{T1}#f', '/{T1}?a=%00', '/../{T1}', '/{T1} x']); ops.push('target') }
  let version = 'HTTP/1.1'
  if (rand() < 0.1) { version = pick(VERSIONS); ops.push('version') }
  const headers: Array<[string, string]> = [['Host', 'web']]
  let body = ''
  if (method === 'POST' || rand() < 0.2) {
    if (rand() < 0.5) { headers.push(['Content-Length', '5']); body = 'hello' } else { headers.push(['Transfer-Encoding', 'chunked']); body = '5\r\nhello\r\n0\r\n\r\n' }
  }
  const n = 1 + int(4)
  let tail = 2
  for (let i = 0; i < n; i++) {
    const op = int(12)
    switch (op) {
      case 0: headers.push(['Transfer-Encoding', pick(TE_VALUES)]); ops.push('te'); break
      case 1: headers.push(['Content-Length', pick(CL_VALUES)]); ops.push('cl'); break
      case 2: headers.push([pick(NAMES), pick(VALUES)]); ops.push('header'); break
      case 3: if (headers.length > 0) { headers.splice(int(headers.length), 1); ops.push('drop-header') } break
      case 4: headers.push([pick(['X-A', 'Transfer-Encoding', 'Host']), `a\r\n ${pick(['chunked', 'b'])}`]); ops.push('obs-fold'); break
      case 5: headers.push([pick(['X A', 'X:A', '', ' X', 'X\u0000', 'Transfer-Encoding ', 'X\u00ff', '(X)']), 'v']); ops.push('bad-name'); break
      case 6: for (let k = int(200); k > 0; k--) headers.push([`X-${k}`, 'v']); ops.push('many-headers'); break
      case 7: headers.push(['Connection', 'Upgrade']); headers.push(['Upgrade', pick(['h2c', 'websocket', 'H2C', 'foo'])]); ops.push('upgrade'); break
      // Each smuggled request has its own token, so each is accounted for on its own.
      case 8: body += pick(['GET /{T2} HTTP/1.1\r\nHost: web\r\n\r\n', '0\r\n\r\nGET /{T2} HTTP/1.1\r\nHost: web\r\n\r\n', 'POST /{T2} HTTP/1.1\r\nHost: web\r\nContent-Length: 3\r\n\r\nabc']).replace('{T2}', `{T${tail++}}`); ops.push('smuggle-tail'); break
      case 9: body = pick(['5\r\nhello\r\n', 'z\r\nhello\r\n0\r\n\r\n', '5;a=b\r\nhello\r\n0\r\nX-T: 1\r\n\r\n', 'ffffffffffffffff\r\nab\r\n', '0\r\n\r\n', '5\nhello\n0\n\n', 'hel']); ops.push('body'); break
      case 10: headers.push(['Expect', pick(['100-continue', '200-ok', ''])]); ops.push('expect'); break
      default: headers.push([pick(['X-A', 'Remora-Attempt', 'Remora-Peer', 'Forwarded', 'X-Envoy-Original-Path']), pick(VALUES)]); ops.push('header')
    }
  }
  const eol = rand() < 0.1 ? pick(EOLS) : '\r\n'
  if (eol !== '\r\n') ops.push('eol')
  let raw = `${method} ${target}${version === '' ? '' : ' '}${version}${eol}${headers.map(([k, v]) => `${k}: ${v}${eol}`).join('')}${eol}${body}`
  // Byte-level mutations outside the request line (the token stays readable).
  if (rand() < 0.25) {
    const start = raw.indexOf('\n') + 1
    const bytes = [...raw]
    for (let k = 1 + int(4); k > 0; k--) {
      const at = start + int(Math.max(1, bytes.length - start))
      const m = int(4)
      if (m === 0) bytes.splice(at, 1)
      else if (m === 1) bytes.splice(at, 0, pick(['\r', '\n', '\u0000', ' ', ':', '\t', '\u00ff', ',']))
      else if (m === 2) bytes[at] = String.fromCharCode(int(256))
      else bytes.splice(at, 0, ...bytes.slice(at, at + int(20)))
    }
    raw = bytes.join('')
    ops.push('bytes')
  }
  if (rand() < 0.1) { raw = raw.slice(0, int(raw.length)); ops.push('truncate') }
  const cls = `gen:${ops.length === 0 ? 'valid' : ops[int(ops.length)]}`
  return h1Case(cls, ops.join('+'), raw, listener, rand() < 0.2)
}

// Generated HTTP/2: a preface, SETTINGS, then frames, some of them malformed.
const u32 = (n: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32BE(n >>> 0); return b }
const setting = (id: number, v: number): Buffer => { const b = Buffer.alloc(6); b.writeUInt16BE(id); b.writeUInt32BE(v >>> 0, 2); return b }

/** Ways to make a request's header block malformed (RFC 9113 §8.1.1, §8.2, §8.3). */
const MALFORM: Array<(h: Array<[string, string]>) => void> = [
  (h) => { h.push(['X-Upper', '1']) },
  (h) => { h.push(['connection', 'keep-alive']) },
  (h) => { h.push(['transfer-encoding', 'chunked']) },
  (h) => { h.push(['te', 'gzip']) },
  (h) => { h.push(['upgrade', 'h2c']) },
  (h) => { h.push(['keep-alive', '1']) },
  (h) => { h.splice(h.findIndex(([n]) => n === ':path'), 1) },
  (h) => { h.splice(h.findIndex(([n]) => n === ':method'), 1) },
  (h) => { h.push([':method', 'POST']) },
  (h) => { h.push([':foo', 'bar']) },
  (h) => { h.unshift(['x-a', '1']) },
  (h) => { h.push([':status', '200']) },
]
/** Invalid field characters in regular headers: nghttp2 drops the field (checked: it never reaches the app). */
const DROPPED: Array<(h: Array<[string, string]>) => void> = [
  (h) => { h.push(['x-a', 'a\u0000b']) },
  (h) => { h.push(['x-a', 'a\r\nx-b: c']) },
  (h) => { h.push(['x a', '1']) },
]

function generateH2 (listener: Listener): Case {
  const id = nextId++
  const tokens: string[] = []
  const malformed: string[] = []
  const ops: string[] = []
  const out: Buffer[] = [PREFACE, frame(4, 0, 0)]
  let stream = 1
  for (let k = 1 + int(4); k > 0; k--) {
    const op = int(16)
    const tok = token(id, stream)
    const headers: Array<[string, string]> = [[':method', 'GET'], [':scheme', 'http'], [':path', `/${tok}`], [':authority', 'web']]
    if (op <= 3) {
      // A request, well-formed or malformed, with or without a body.
      const bad = op <= 1
      if (bad && rand() < 0.2) { pick(DROPPED)(headers); ops.push('invalid-field') } else if (bad) { pick(MALFORM)(headers); malformed.push(tok); ops.push('malformed-headers') } else ops.push('request')
      if (rand() < 0.3) headers.push([pick(['remora-attempt', 'remora-peer', 'x_under', 'content-length', 'host']), pick(['1', '5', 'evil', '-1'])])
      const withBody = rand() < 0.3
      out.push(frame(1, 0x4 | (withBody ? 0 : 0x1), stream, hpack(headers)))
      if (withBody) out.push(frame(0, rand() < 0.7 ? 1 : 0, stream, Buffer.from('hello')))
      tokens.push(tok)
      stream += 2
    } else if (op === 4) {
      // Header block split in CONTINUATIONs, maybe interrupted or flooding.
      const block = hpack([...headers, ...Array.from({ length: int(300) }, (_, i): [string, string] => [`x-c${i}`, 'v'.repeat(int(100))])])
      const parts = 2 + int(6)
      const size = Math.ceil(block.length / parts)
      out.push(frame(1, 0x1, stream, block.subarray(0, size)))
      for (let at = size; at < block.length; at += size) {
        if (rand() < 0.1) { out.push(frame(pick([0, 6, 8]), 0, pick([0, stream]), Buffer.alloc(8))); ops.push('interrupted-continuation') }
        out.push(frame(9, at + size >= block.length ? 0x4 : 0, stream, block.subarray(at, at + size)))
      }
      ops.push('continuation')
      tokens.push(tok)
      stream += 2
    } else if (op === 5) {
      out.push(frame(1, 0x5, stream, hpack(headers)))
      out.push(frame(1, 0x5, pick([stream, stream - 2 < 1 ? 1 : stream - 2, stream + 1]), hpack(headers)))
      ops.push('stream-id-reuse')
      tokens.push(tok)
      stream += 2
    } else if (op === 6) { out.push(frame(0, 1, pick([0, stream, stream + 1, 99]), Buffer.from('data'))); ops.push('data-bad-stream') } else if (op === 7) { out.push(frame(8, 0, pick([0, 1, stream]), pick([u32(0), u32(0x7fffffff), Buffer.from([1, 2, 3])]))); ops.push('window-update') } else if (op === 8) { out.push(frame(4, pick([0, 1]), pick([0, 1]), pick([setting(2, 2), setting(4, 0x80000000), setting(5, 1), setting(5, 0xffffff + 1), setting(3, 0), Buffer.alloc(5), setting(99, 1)]))); ops.push('settings') } else if (op === 9) { out.push(frame(6, 0, pick([0, 1]), Buffer.alloc(pick([8, 7, 9, 0])))); ops.push('ping') } else if (op === 10) { out.push(frame(3, 0, pick([0, stream, 1]), pick([u32(8), Buffer.alloc(3)]))); ops.push('rst-stream') } else if (op === 11) { out.push(frame(2, 0, pick([0, stream]), Buffer.concat([u32(pick([stream, 0, 1])), Buffer.from([16])]))); ops.push('priority') } else if (op === 12) { out.push(frame(0x20 + int(200), int(256), int(10), Buffer.alloc(int(50)))); ops.push('unknown-frame') } else if (op === 13) {
      // Padded HEADERS whose pad length exceeds the payload.
      const block = hpack(headers)
      out.push(frame(1, 0x8 | 0x4 | 0x1, stream, Buffer.concat([Buffer.from([255]), block])))
      malformed.push(tok)
      tokens.push(tok)
      stream += 2
      ops.push('bad-padding')
    } else if (op === 14) {
      // Content-length that the DATA does not match.
      headers[0] = [':method', 'POST']
      headers.push(['content-length', pick(['3', '10', '0'])])
      out.push(frame(1, 0x4, stream, hpack(headers)))
      out.push(frame(0, 1, stream, Buffer.from('hello')))
      tokens.push(tok)
      stream += 2
      ops.push('content-length-mismatch')
    } else { out.push(frame(pick([1, 0, 7, 5]), 0, stream, Buffer.alloc(int(20000)))); ops.push('oversized-or-garbage') }
  }
  return { id, cls: `h2:${ops[int(ops.length)]}`, name: ops.join('+'), listener, chunks: out, tokens, h2: true, malformed }
}

// ---- running a case ----------------------------------------------------------------------------

interface Outcome { received: Buffer, closedByPeer: boolean, localPort: number | undefined }
async function run (c: Case): Promise<Outcome> {
  const port = c.listener === 'outbound' ? client.ports.outbound : web.ports.inbound
  const socket = net.connect(port, '127.0.0.1')
  const chunks: Buffer[] = []
  let last = Date.now()
  let closed = false
  socket.on('data', (d: Buffer) => { chunks.push(d); last = Date.now() })
  socket.on('error', () => {})
  const done = new Promise<void>((resolve) => socket.once('close', () => { closed = true; resolve() }))
  await new Promise<void>((resolve) => { socket.once('connect', resolve); socket.once('close', resolve) })
  const localPort = socket.localPort
  for (const chunk of c.chunks) {
    if (closed) break
    socket.write(chunk)
    last = Date.now()
    if (c.chunks.length > 1) await sleep(1)
  }
  const deadline = Date.now() + 5_000
  while (!closed && Date.now() - last < QUIET_MS && Date.now() < deadline) await Promise.race([done, sleep(50)])
  const closedByPeer = closed
  socket.destroy()
  await done
  return { received: Buffer.concat(chunks), closedByPeer, localPort }
}

interface Response { status: number, app: boolean, tokens: string[], proxyError: string | undefined }
/** HTTP/1.1 responses in order (Content-Length or chunked framing); stops at anything else. */
function parseH1 (buf: Buffer): Response[] {
  const out: Response[] = []
  let at = 0
  while (at < buf.length) {
    const end = buf.indexOf('\r\n\r\n', at)
    if (end < 0) break
    const lines = buf.subarray(at, end).toString('latin1').split('\r\n')
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0])
    if (m === null) break
    const h = new Map(lines.slice(1).map((l) => [l.slice(0, l.indexOf(':')).trim().toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]))
    const status = Number(m[1])
    out.push({ status, app: h.get('x-app') === '1', tokens: (h.get('x-fz-token') ?? '').split(',').filter(Boolean), proxyError: h.get('remora-proxy-error') })
    at = end + 4
    if (status === 101) break
    if (status >= 100 && status < 200) continue
    if (/chunked/i.test(h.get('transfer-encoding') ?? '')) {
      const last = buf.indexOf('\r\n0\r\n\r\n', at - 2)
      if (last < 0) break
      at = last + 7
    } else at += Number(h.get('content-length') ?? 0)
  }
  return out
}

interface H2Result { headersOn: Set<number>, rstOn: Map<number, number>, goaway: { last: number, code: number } | undefined }
function parseH2 (buf: Buffer): H2Result {
  const r: H2Result = { headersOn: new Set(), rstOn: new Map(), goaway: undefined }
  let at = 0
  while (at + 9 <= buf.length) {
    const len = buf.readUIntBE(at, 3)
    const type = buf[at + 3]
    const sid = buf.readUInt32BE(at + 5) & 0x7fffffff
    if (at + 9 + len > buf.length) break
    const p = buf.subarray(at + 9, at + 9 + len)
    if (type === 1) r.headersOn.add(sid)
    if (type === 3 && p.length >= 4) r.rstOn.set(sid, p.readUInt32BE(0))
    if (type === 7 && p.length >= 8) r.goaway = { last: p.readUInt32BE(0) & 0x7fffffff, code: p.readUInt32BE(4) }
    at += 9 + len
  }
  return r
}

/** A normal request on its own connection; must be answered by the app. */
async function probe (listener: Listener, n: number): Promise<number> {
  const port = listener === 'outbound' ? client.ports.outbound : web.ports.inbound
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path: `/probe-${n}`, headers: { host: 'web' }, agent: false, timeout: 5_000 }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.headers['x-app'] === '1' ? (res.statusCode ?? 0) : -(res.statusCode ?? 0)))
    })
    req.on('timeout', () => req.destroy())
    req.on('error', () => resolve(0))
    req.end()
  })
}

// ---- the run -----------------------------------------------------------------------------------

interface ClassStats { cases: number, reachedApp: number, rejectedByProxy: number, noAnswer: number, violations: number }
const stats = new Map<string, ClassStats>()
const stat = (cls: string): ClassStats => {
  let s = stats.get(cls)
  if (s === undefined) { s = { cases: 0, reachedApp: 0, rejectedByProxy: 0, noAnswer: 0, violations: 0 }; stats.set(cls, s) }
  return s
}
/** Proxy-originated statuses that mean "your request was refused as is" (not an upstream failure). */
const REJECTING = (status: number): boolean => status >= 400 && status < 500 && status !== 408 && status !== 429
const findings: string[] = []
const finding = (c: Case, what: string): void => {
  stat(c.cls).violations++
  if (findings.length < 40) findings.push(`case ${c.id} [${c.cls}] ${c.name} (${c.listener}): ${what}\n    sent: ${JSON.stringify(Buffer.concat(c.chunks).subarray(0, 300).toString('latin1'))}`)
}

t.test('hostile HTTP/1.1 and HTTP/2 inputs through the sidecar pair', async (t) => {
  const listenerFor = (i: number): Listener => (i % 4 === 3 ? 'inbound' : 'outbound')
  // Three families, run one after the other, each checked for leaks once it is done.
  const families: Array<{ name: string, cases: Case[] }> = [{ name: 'HTTP/1.1 corpus', cases: [] }, { name: 'HTTP/1.1 generated', cases: [] }, { name: 'HTTP/2 generated', cases: [] }]
  corpus.forEach((e, i) => { for (const l of ['outbound', 'inbound'] as const) families[0].cases.push(h1Case(`corpus:${e.class}`, e.name, e.raw, l, i % 5 === 0)) })
  for (let i = 0; i < H1_CASES; i++) families[1].cases.push(generateH1(listenerFor(i)))
  for (let i = 0; i < H2_CASES; i++) families[2].cases.push(generateH2(listenerFor(i)))
  const cases = families.flatMap((f) => f.cases)
  const byId = new Map(cases.map((c) => [c.id, c]))
  const outcomes = new Map<number, Outcome>()
  const probes: Array<{ n: number, status: number }> = []

  // Every request ends: nothing in flight, no connection left open (the web sidecar's inbound keeps
  // the client sidecar's pooled connections: at most a few).
  const inflight = async (): Promise<number> => (await metric(client.adminUrl, 'remora_requests_in_flight')) + (await metric(web.adminUrl, 'remora_requests_in_flight'))
  const open = async (admin: string, direction: string): Promise<number> =>
    (await metric(admin, 'remora_tcp_connections_opened_total', { direction })) - (await metric(admin, 'remora_tcp_connections_closed_total', { direction }))
  const settled = async (): Promise<{ inflight: number, client: number, web: number }> => {
    let last = { inflight: -1, client: -1, web: -1 }
    try {
      await eventually(async () => {
        last = { inflight: await inflight(), client: await open(client.adminUrl, 'outbound'), web: await open(web.adminUrl, 'inbound') }
        return last.inflight === 0 && last.client === 0 && last.web <= 4
      }, 15_000, 'nothing in flight, no socket open')
    } catch { /* reported by the caller */ }
    if (last.client > 0 || last.web > 4) {
      // Which cases' connections the sidecars still hold (their side of a connection the test closed).
      const byPort = new Map([...outcomes].map(([id, o]) => [o.localPort, id]))
      const held = execFileSync('ss', ['-tnH', 'state', 'all', `( sport = :${client.ports.outbound} or sport = :${web.ports.inbound} )`], { encoding: 'utf8' })
      for (const line of held.split('\n')) {
        if (line.startsWith('TIME-WAIT') || line.trim() === '') continue
        const id = byPort.get(Number(/127\.0\.0\.1:(\d+)\s*$/.exec(line.trim())?.[1]))
        const c = id === undefined ? undefined : byId.get(id)
        if (c === undefined) t.comment(`held, not a case's: ${line.trim()}`)
        else finding(c, `its connection is still held by the sidecar: ${line.trim()}`)
      }
    }
    return last
  }

  const started = Date.now()
  const leaks: string[] = []
  for (const family of families) {
    let next = 0
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (next < family.cases.length) {
        const c = family.cases[next++]
        outcomes.set(c.id, await run(c))
        if (c.id % PROBE_EVERY === 0) probes.push({ n: c.id, status: await probe(c.listener, c.id) })
      }
    }))
    const after = await settled()
    t.comment(`${family.name}: ${family.cases.length} cases; afterwards in flight ${after.inflight}, client outbound connections open ${after.client}, web inbound ${after.web} (the peer pool)`)
    t.equal(after.inflight, 0, `${family.name}: remora_requests_in_flight returns to 0 on both sidecars`)
    t.equal(after.client, 0, `${family.name}: client sidecar: outbound connections opened - closed returns to 0`)
    t.ok(after.web <= 4, `${family.name}: web sidecar: inbound connections opened - closed returns to the peer pool (${after.web})`)
    leaks.push(`${family.name} ${after.inflight}/${after.client}`)
  }
  t.comment(`${cases.length} cases in ${Date.now() - started} ms`)

  for (const s of [client, web]) {
    const fatal = s.logs().find((l) => l.level === 'fatal' || (l.msg === 'draining: no new connections; in-flight requests may finish' && l.why === 'unexpected error'))
    const death = s.deathReport()
    const why = fatal !== undefined ? `: ${JSON.stringify(fatal).slice(0, 600)}` : death === '' ? '' : `: ${death}`
    t.ok(death === '' && fatal === undefined, `${s.name} sidecar still running, no fatal error${why}`)
  }
  const badProbes = probes.filter((p) => p.status !== 200)
  t.same(badProbes, [], `every normal request on another connection was answered by the app (${probes.length} probes)`)

  // Nothing the proxy rejected reaches the app.
  let forwardedThen400 = 0
  for (const c of cases) {
    const o = outcomes.get(c.id) as Outcome
    const s = stat(c.cls)
    s.cases++
    const reached = c.tokens.filter((tok) => (received.get(tok) ?? 0) > 0)
    if (reached.length > 0) s.reachedApp++
    if (c.h2) {
      const r = parseH2(o.received)
      for (const tok of c.malformed) if ((received.get(tok) ?? 0) > 0) finding(c, `malformed HTTP/2 request ${tok} reached the app as ${JSON.stringify(receivedDetail.get(tok))}`)
      if (r.goaway !== undefined && r.goaway.code !== 0) s.rejectedByProxy++
      else if (r.headersOn.size === 0) s.noAnswer++
      continue
    }
    const responses = parseH1(o.received)
    const rejected = responses.filter((r) => !r.app && REJECTING(r.status))
    if (rejected.length > 0) s.rejectedByProxy++
    if (responses.length === 0) s.noAnswer++
    const answered = new Set(responses.filter((r) => r.app).flatMap((r) => r.tokens))
    for (const tok of reached) {
      // The proxy streams: a request whose body turns out malformed was already forwarded when the
      // 400 is sent. Counted, not failed; smuggled requests show up in the access-log check
      // (forwarded with no line of their own).
      if (rejected.length > 0 && !answered.has(tok)) forwardedThen400++
      // A lone request answered only by the proxy's refusal must never have reached the app whole
      // (its head may have: the body is streamed, and its error found later cuts the app's copy off).
      if (rejected.length > 0 && !answered.has(tok) && c.tokens.length === 1 && rejected[0] === responses[0] && responses.length === 1 && completed.has(tok)) finding(c, `proxy answered ${rejected.map((r) => `${r.status} ${r.proxyError ?? '(parser)'}`).join(', ')} yet the app received ${tok} as ${JSON.stringify(receivedDetail.get(tok))}`)
    }
  }

  // Every request the app received was logged exactly once on each sidecar it crossed.
  const count = (logs: Array<Record<string, unknown>>, direction: string): Map<string, number> => {
    const m = new Map<string, number>()
    for (const l of logs) {
      if (l.access !== direction) continue
      for (const tok of String(l.path ?? '').match(TOKEN) ?? []) m.set(tok, (m.get(tok) ?? 0) + 1)
    }
    return m
  }
  // Lines come through the sidecars' stdout, after the requests ended: wait until every request the
  // app received has its inbound line (or give up and let the counts below say what is missing).
  try {
    await eventually(() => { const seenIn = count(web.logs(), 'inbound'); return [...received.keys()].every((tok) => seenIn.has(tok)) }, 10_000, 'the access lines')
  } catch { /* reported below */ }
  const outLog = count(client.logs(), 'outbound')
  const inLog = count(web.logs(), 'inbound')
  let notLoggedOnce = 0
  let loggedTwice = 0
  for (const c of cases) {
    for (const tok of c.tokens) {
      const got = received.get(tok) ?? 0
      const o = outLog.get(tok) ?? 0
      const i = inLog.get(tok) ?? 0
      if (o > 1 || i > 1) { loggedTwice++; finding(c, `${tok} logged ${o} times outbound, ${i} times inbound`) }
      if (got === 1 && ((c.listener === 'outbound' && o !== 1) || i !== 1)) { notLoggedOnce++; finding(c, `${tok} reached the app but was logged ${o} times outbound, ${i} times inbound`) }
    }
  }
  t.equal(notLoggedOnce, 0, 'every request that reached the app is logged once on each sidecar it crossed')
  // Issue 18, defect 10: the app here never answers 5xx, so every 5xx on the record is the proxy's own and says why.
  const unexplained = [...client.logs(), ...web.logs()].filter((l) => l.access !== undefined && Number(l.status) >= 500 && (l.error === undefined || l.error === ''))
  t.same(unexplained.slice(0, 5), [], `every 5xx access line names its reason (${unexplained.length} do not)`)
  t.equal(loggedTwice, 0, 'no request is logged twice')

  const violations = [...stats.values()].reduce((n, s) => n + s.violations, 0)
  t.comment(`seed ${SEED}; by class: cases / reached app / rejected by proxy / no answer / violations`)
  for (const [cls, s] of [...stats.entries()].sort()) t.comment(`  ${cls.padEnd(40)} ${s.cases} / ${s.reachedApp} / ${s.rejectedByProxy} / ${s.noAnswer} / ${s.violations}`)
  t.comment(`forwarded while still arriving, then refused by the proxy (a body error found midway; the app saw it cut off, never whole): ${forwardedThen400}`)
  // eslint-disable-next-line no-control-regex
  const badFields = [...receivedDetail.values()].filter((d) => Object.entries(d.headers).some(([n, v]) => /[\s\u0000]/.test(n) || /[\r\n\u0000]/.test(String(v))))
  t.same(badFields, [], 'no header with invalid characters reached the app')
  t.comment(`app received ${untokened} requests without a readable token; probes ${probes.length}, failed ${badProbes.length}; in flight / client connections open after each family: ${leaks.join(', ')}`)
  for (const f of findings) t.comment(f)
  if (process.env.FUZZ_DUMP !== undefined) { writeFileSync(`${process.env.FUZZ_DUMP}.client.log`, client.output); writeFileSync(`${process.env.FUZZ_DUMP}.web.log`, web.output) }
  t.equal(violations, 0, 'no rejected or malformed request reached the app, none logged wrongly')
})
