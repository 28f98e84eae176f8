/**
 * The smallest relay node:tls makes: implicit TLS with the given certificate on one side, a
 * plaintext TCP connection to the backend on the other, bytes piped both ways (TCP_NODELAY on
 * both), no POP3 at all: what stunnel does, in Node. bench/syscalls.ts measures it beside
 * popwarden and stunnel, so that what a command costs Node's own sockets, streams and TLS (the
 * floor under popwarden) is told apart from what popwarden's code adds. Plain JavaScript, so
 * that no loader sits in it.
 *
 *   node [FLAGS] bench/bare-tls-relay.mjs PORT CERT KEY BACKEND_PORT
 */
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { createServer } from 'node:tls';

const [port, certFile, keyFile, backendPort] = process.argv.slice(2);
createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile), minVersion: 'TLSv1.3', noDelay: true }, (client) => {
  const backend = connect({ host: '127.0.0.1', port: Number(backendPort), noDelay: true });
  const close = () => {
    client.destroy();
    backend.destroy();
  };
  client.on('error', close).on('close', close);
  backend.on('error', close).on('close', close);
  client.pipe(backend);
  backend.pipe(client);
}).listen(Number(port), '127.0.0.1');
