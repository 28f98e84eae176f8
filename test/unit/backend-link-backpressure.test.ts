/**
 * The relay stops reading the backend while the client is full, from the first write of a
 * reply on. A link that read on anyway (the status line's write filled the client, and streamBody
 * resumed the socket regardless) also started a second idle timer for the reply when the client
 * drained, and the first was never cleared: each such RETR kept its closed session in memory for
 * timeouts.backend_idle (10 min), found by the soak (bench/endurance.ts) in a heap snapshot.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, connect, type Socket } from 'node:net';
import { BackendLink, type BodySink } from '../../src/backend/link.js';

test('streamBody does not read the backend while the client has not drained its first write', async () => {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  const [backend] = await accepted;
  try {
    const link = new BackendLink(socket, () => undefined);
    link.send('RETR 1');
    await once(backend, 'data');
    backend.write('+OK\r\n');
    await link.readRawLine('relay', 5_000);

    let drain: () => void = () => undefined;
    const drained = new Promise<void>((resolve) => (drain = resolve));
    const writes: Buffer[] = [];
    // A client whose buffer the status line alone fills: the first write asks to wait.
    const sink: BodySink = { write: (chunk) => writes.push(chunk) > 1, drained: () => drained };
    const body = link.streamBody(sink, 600_000, Buffer.from('+OK 2 octets\r\n'));
    assert.ok(body !== undefined, 'the body has not arrived yet: there is something to wait for');
    body.catch(() => undefined); // awaited below; a failed assertion must not leave it unhandled

    assert.equal(writes.length, 1);
    assert.equal(socket.isPaused(), true, 'the backend socket is read while the client is full');

    drain();
    await drained;
    backend.write('ab\r\n.\r\n');
    await body;
    assert.equal(Buffer.concat(writes).toString('latin1'), '+OK 2 octets\r\nab\r\n.\r\n');
  } finally {
    socket.destroy();
    backend.destroy();
    server.close();
  }
});
