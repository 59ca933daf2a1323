// The floor: a naive one-hop Node proxy (http.createServer → http.request with a keep-alive agent, piped).
import http from 'node:http'

const [listenPort, upstreamPort] = process.argv.slice(2).map(Number)
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 })

http.createServer((req, res) => {
  const up = http.request({ host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url, headers: req.headers, agent }, (upRes) => {
    res.writeHead(upRes.statusCode ?? 502, upRes.headers)
    upRes.pipe(res)
  })
  up.on('error', () => {
    if (!res.headersSent) res.writeHead(502)
    res.end()
  })
  req.pipe(up)
}).listen(listenPort, '127.0.0.1')
process.stdin.on('end', () => process.exit(0)).on('error', () => process.exit(0)).resume()
