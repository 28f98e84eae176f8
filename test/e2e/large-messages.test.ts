/**
 * Big and hostile bodies through the relay: a 50 MB message with NUL, bare CR and LF, 8-bit
 * bytes, dot lines and a 10 MiB line without CRLF arrives byte-identical, and a client that reads
 * slowly slows the backend down instead of growing popwarden's memory. D-04, D-10.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { startFakeBackend, legacyScript, type FakeBackend } from '../harness/fake-backend.js';
import { dotStuff } from '../harness/maildrop.js';
import { startTestProxy, type TestProxy } from '../harness/popwarden.js';
import { RawClient } from '../harness/raw-client.js';

const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

/** A deterministic 50 MB message that contains every byte pattern a relay could trip over. */
function hostileMessage(): Buffer {
  const parts: Buffer[] = [Buffer.from('From: big@example.test\r\nSubject: big\r\n\r\n..starts stuffed\r\n.\r\nx\n.\n+OK forged\r\n')];
  parts.push(Buffer.from([0x00, 0x0d, 0x41, 0x0a, 0x42, 0x0d, 0x0d, 0x0a, 0x80, 0xff, 0xfe, 0x0d, 0x0a]));
  parts.push(Buffer.alloc(10 * 1024 * 1024, 0x61)); // a 10 MiB line with no CRLF inside
  parts.push(Buffer.from('\r\n'));
  const line = Buffer.from(`${'0123456789'.repeat(200)}\r\n.\r\n..\r\n`); // 2,000-character lines and dot lines
  let size = parts.reduce((sum, part) => sum + part.length, 0);
  while (size < 50 * 1024 * 1024) {
    parts.push(line);
    size += line.length;
  }
  return Buffer.concat(parts);
}

describe('large messages', () => {
  let backend: FakeBackend;
  let proxy: TestProxy;
  let message: Buffer;
  let stuffed: Buffer;
  /** Bytes of the current RETR the backend has handed to its kernel so far. */
  let handedOff = 0;

  before(async () => {
    message = hostileMessage();
    stuffed = dotStuff(message);
    backend = await startFakeBackend(
      legacyScript({
        accounts: { big: { pass: 'bigpass', messages: [message, Buffer.from('small\r\n')] } },
        // Writes RETR 1 in 64 KiB pieces, each awaited, so the test sees how far the relay lets it get.
        onCommand: async ({ conn, verb, args }) => {
          if (verb !== 'RETR' || args[0] !== '1') return;
          handedOff = 0;
          await conn.write(`+OK ${message.length} octets\r\n`);
          for (let at = 0; at < stuffed.length; at += 64 * 1024) {
            const piece = stuffed.subarray(at, at + 64 * 1024);
            await conn.write(piece);
            handedOff += piece.length;
          }
          return true;
        },
      }),
    );
    proxy = await startTestProxy({ backend: { host: backend.host, port: backend.port } });
  });
  after(async () => {
    await proxy.stop();
    await backend.stop();
  });

  const loggedIn = async (): Promise<RawClient> => {
    const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
    await client.readLine();
    await client.command('USER big');
    assert.equal(await client.command('PASS bigpass'), '+OK Logged in');
    return client;
  };

  test('a 50 MB hostile message arrives byte-identical, then the session goes on (D-04)', async () => {
    const client = await loggedIn();
    const { status, body } = await client.multi('RETR 1', 60_000);
    assert.match(status, /^\+OK/);
    assert.equal(body.length, stuffed.length);
    assert.equal(sha256(body), sha256(stuffed));
    assert.equal(await client.command('NOOP'), '+OK');
    client.destroy();
  });

  test('a client that stops reading pauses the backend instead of filling memory (D-10)', async () => {
    const client = await loggedIn();
    client.socket.pause();
    client.write('RETR 1\r\n');
    // The wait is the subject: it proves an absence (the backend does not get to send it all).
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    // A relay that buffered would have taken all 50 MB from the backend by now; one that honours
    // backpressure stops at what the kernel socket buffers on the two loopback links hold (about
    // 11 MB here: autotuned buffers on both ends of both links).
    const stalledAt = handedOff;
    assert.ok(stalledAt < 30 * 1024 * 1024, `backend got ${stalledAt} bytes out while the client read nothing`);
    client.socket.resume();
    const status = await client.readLine(10_000);
    assert.match(status, /^\+OK/);
    const body = await client.readUntilTerminator(60_000);
    assert.equal(sha256(body), sha256(stuffed));
    assert.equal(handedOff, stuffed.length);
    client.destroy();
  });
});
