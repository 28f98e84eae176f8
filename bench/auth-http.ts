/**
 * The auth_http endpoint nginx's mail proxy asks before each login (ngx_mail_auth_http_module):
 * it answers every request with the backend's address, so nginx logs in to the backend with the
 * client's own USER/PASS and a wrong password is the backend's to refuse. A process of its own,
 * so that what it costs per login can be read apart from nginx.
 *
 *   node --import tsx bench/auth-http.ts PORT BACKEND_PORT
 */
import { createServer } from 'node:http';

const [port, backendPort] = process.argv.slice(2).map(Number);
if (!Number.isInteger(port) || !Number.isInteger(backendPort)) {
  console.error('usage: auth-http.ts PORT BACKEND_PORT');
  process.exit(2);
}
const headers = { 'Auth-Status': 'OK', 'Auth-Server': '127.0.0.1', 'Auth-Port': String(backendPort) };
createServer((request, response) => {
  request.resume();
  response.writeHead(200, headers).end();
}).listen(port, '127.0.0.1');
