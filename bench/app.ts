// Bench upstream app: node:http answering every request with the same ~100-byte body (run as a child).
import http from 'node:http'

const port = Number(process.argv[2])
const BODY = Buffer.from('{"service":"web","message":"hello from the remora bench app","padding":"0123456789abcdefghijklmn"}\n')
/** Connections accepted so far: a proxy that does not reuse upstream connections shows up here. */
let connections = 0
let requests = 0

const server = http.createServer((req, res) => {
  req.resume()
  if (req.url === '/__bench/stats') {
    res.end(JSON.stringify({ connections, requests }))
    return
  }
  requests++
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': BODY.length })
  res.end(BODY)
})
server.on('connection', () => { connections++ })
// Proxies keep idle upstream connections for a while; don't close them under their feet.
server.keepAliveTimeout = 65_000
server.listen(port, '127.0.0.1')
// The bench holds our stdin open; when it goes away (even killed), so do we.
process.stdin.on('end', () => process.exit(0)).on('error', () => process.exit(0)).resume()
