/**
 * BackendPrograms on its own (issue 12.1): the program's stdin and stdout are one and the same
 * socket, as inetd makes them; the cap holds when logins start together; close() waits for every
 * program.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { BackendPrograms } from '../../src/backend/programs.js';
import { BackendUnavailableError } from '../../src/errors.js';
import { createLogger } from '../../src/observability/log.js';
import type { ExecCommand } from '../../src/config/types.js';

const log = createLogger('silent', new Writable({ write: (_c, _e, cb) => cb() }));
const programs = new BackendPrograms(log);
after(() => programs.close());

const sh = (script: string): ExecCommand => ({ command: '/bin/sh', args: ['-c', script], environment: {}, cwd: undefined });
const options = { limit: 2, client: undefined, log, timeoutMs: 5_000 };

/** Everything the program writes until it closes its end. */
async function output(socket: import('node:net').Socket): Promise<string> {
  let text = '';
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
  socket.resume();
  await new Promise((resolve) => socket.once('end', resolve));
  socket.destroy();
  return text;
}

test("descriptors 0 and 1 are one socket, both ways: the program reads what popwarden writes and answers on the same socket", async () => {
  const { socket, process } = await programs.start(sh('readlink /proc/$$/fd/0 /proc/$$/fd/1; read line; echo "got $line"'), options);
  socket.write('hello\n');
  const [zero, one, echo] = (await output(socket)).trim().split('\n');
  await process.exited;
  assert.match(zero ?? '', /^socket:\[\d+\]$/);
  assert.equal(one, zero);
  assert.equal(echo, 'got hello');
});

test('the cap holds for starts that begin together', async () => {
  assert.equal(programs.running, 0);
  const results = await Promise.allSettled([1, 2, 3].map(() => programs.start(sh('read line'), options)));
  const started = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const refused = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as BackendUnavailableError] : []));
  try {
    assert.equal(started.length, 2);
    assert.deepEqual(refused.map((error) => error.code), ['E_BACKEND_BUSY']);
  } finally {
    for (const { socket } of started) socket.destroy();
    await Promise.all(started.map(({ process }) => process.exited));
  }
  assert.equal(programs.running, 0);
});
