/**
 * The smallest POP3-looking server node:tls makes: implicit TLS with the given certificate,
 * `+OK` as greeting and as the answer to every line, nothing else. bench/node-tls-floor.ts runs
 * it to measure what Node's own TLS costs per idle session and per handshake, with no popwarden
 * code at all: the floor under popwarden's (b) and (d). Plain JavaScript, so that no loader
 * (tsx, esbuild) sits in its memory.
 *
 *   node [FLAGS] bench/bare-tls-server.mjs PORT CERT KEY
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:tls';

const [port, certFile, keyFile] = process.argv.slice(2);
const OK = Buffer.from('+OK\r\n', 'latin1');
createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile), minVersion: 'TLSv1.3', noDelay: true }, (socket) => {
  socket.on('error', () => undefined);
  socket.write(OK);
  // One answer per chunk: the bench's clients send one line and wait for its reply.
  socket.on('data', () => socket.write(OK));
}).listen(Number(port), '127.0.0.1');
