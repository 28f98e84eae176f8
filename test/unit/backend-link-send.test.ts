/**
 * BackendLink.send is the last line of defence against command injection (callers validate the
 * line first): a CR, LF or NUL anywhere in a line must never reach the backend, where it would
 * end the command early and start another (a DELE the client never sent).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tcpPair } from '../harness/tcp-pair.js';
import { BackendLink } from '../../src/backend/link.js';

test('send refuses a line with CR, LF or NUL anywhere, and writes nothing', async () => {
  const { ours, peer: backend, close } = await tcpPair();
  let received = '';
  backend.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
  const link = new BackendLink(ours, () => undefined);
  try {
    for (const line of ['USER a\r\nDELE 1', 'USER a\nDELE 1', 'USER a\rDELE 1', 'USER a\0', '\nNOOP', 'NOOP\r']) {
      assert.throws(() => link.send(line), /CR, LF or NUL/, JSON.stringify(line));
      assert.throws(() => link.send(Buffer.from(line, 'latin1')), /CR, LF or NUL/, JSON.stringify(line));
    }
    link.send('NOOP \t\x7f\xff');
    await new Promise<void>((resolve) => backend.once('data', () => resolve()));
    assert.equal(received, 'NOOP \t\x7f\xff\r\n', 'only the clean line reached the backend, with its CRLF');
  } finally {
    link.destroy();
    close();
  }
});
