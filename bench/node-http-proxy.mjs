// node-http-proxy with a keep-alive agent: the Node baseline proxy.
//   node bench/node-http-proxy.mjs LISTEN_PORT UPSTREAM_PORT
import http from 'node:http';
import httpProxy from 'http-proxy';

const [port, upstream] = process.argv.slice(2).map(Number);
const agent = new http.Agent({ keepAlive: true, maxSockets: 1024 });
const proxy = httpProxy.createProxyServer({ target: `http://127.0.0.1:${upstream}`, agent });
proxy.on('error', (_e, _req, res) => {
  res.writeHead?.(502);
  res.end?.();
});
const server = http.createServer((req, res) => proxy.web(req, res));
server.keepAliveTimeout = 60000;
server.listen(port, '127.0.0.1');
