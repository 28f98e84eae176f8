/**
 * A connection accepted before shutdown whose TLS handshake (or PROXY header) completes after
 * close() has begun must not become a session: close() has already closed the sessions it knew
 * of (and, once the failed-login settlement lands, ended every failure's wait), so a late one
 * would be served by a process that is stopping, with its failures answered at once, and its
 * listener's close (which waits for every connection) would hold shutdown for as long as the
 * client keeps it alive. Real Dovecot behind it: without the fix the late session logs in.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';
import { sampleMaildrop } from '../harness/maildrop.js';
import { startTestProxy } from '../harness/popwarden.js';

let dovecot: Dovecot;
before(async () => {
  dovecot = await startDovecot({ profile: 'all', accounts: ['alice'], authPenalty: false, authFailureDelay: '0' });
});
after(() => dovecot.stop());

/** Everything the server sends until it closes the connection. */
async function readToEnd(socket: Socket): Promise<string> {
  let text = '';
  let loggingIn = false;
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    text += chunk;
    // A served session greets: log in (and out), as an attacker's next guess would be sent.
    if (text.startsWith('+OK') && !loggingIn) {
      const alice = sampleMaildrop().alice;
      loggingIn = true;
      socket.write(`USER ${alice.user}\r\nPASS ${alice.pass}\r\nQUIT\r\n`);
    }
  });
  socket.on('error', () => undefined);
  await once(socket, 'close');
  return text;
}

test('a TLS handshake that completes after close() began is closed with -ERR [SYS/TEMP], not served, and close() resolves', { timeout: 60_000 }, async (t) => {
  const proxy = await startTestProxy({ backend: { host: dovecot.host, port: dovecot.port } });
  // Accepted now; the ClientHello is sent only once close() has begun.
  const raw = tcpConnect({ host: proxy.host, port: proxy.tlsPort });
  await once(raw, 'connect');
  await proxy.waitForLog((line) => line['msg'] === 'listening');
  const closed = proxy.proxy.close();
  const secured = tlsConnect({ socket: raw, ca: readFileSync(proxy.caFile), servername: 'localhost' });
  t.after(() => secured.destroy());
  const heard = await readToEnd(secured);
  assert.doesNotMatch(heard, /^\+OK/, `a late connection was served: ${JSON.stringify(heard)}`);
  assert.match(heard, /^-ERR \[SYS\/TEMP\] [^\r\n]*shutting down[^\r\n]*\r\n$/);
  await closed;
  assert.equal(dovecot.loginCount('alice'), 0);
});
