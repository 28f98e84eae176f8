/**
 * BackendPrograms on its own (issue 12.1): the program's stdin and stdout are one and the same
 * socket, as inetd makes them; the cap holds when logins start together; close() waits for every
 * program. With a test clock: one address's share of programs in their login, and a full bound
 * that makes room by ending the oldest program still in its login.
 */
import { after, describe, it, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { BackendPrograms, type BackendProcess } from '../../src/backend/programs.js';
import { EVICTION_MIN_AGE_MS } from '../../src/config/limits.js';
import { CidrList } from '../../src/net/cidr.js';
import type { ClientOrigin } from '../../src/net/proxy-intake.js';
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

describe('a full bound and one address cannot hold every program (wrong passwords in parallel)', () => {
  const from = (address: string): ClientOrigin => ({ address, port: 40_000, localAddress: '127.0.0.1', localPort: 995, via: undefined });
  /** A clock the test moves: the programs' ages. */
  let now = 1_000_000;
  const bounded = new BackendPrograms(log, { ipv6PrefixLength: 64, exempt: new CidrList(['192.0.2.99/32']), now: () => now });
  after(() => bounded.close());
  const waiting = sh('read line');
  const start = (address: string, limit = 10) => bounded.start(waiting, { limit, client: from(address), log, timeoutMs: 5_000 });
  const end = async (...started: { socket: import('node:net').Socket; process: BackendProcess }[]): Promise<void> => {
    for (const { socket } of started) socket.destroy();
    await Promise.all(started.map(({ process }) => process.exited));
  };

  it('one address has its share of logins in progress, not more, until each is released; an allow-listed address has none', () => {
    const first = bounded.enterLogin(from('192.0.2.1'), 1);
    assert.throws(() => bounded.enterLogin(from('192.0.2.1'), 1), (error: BackendUnavailableError) => error.code === 'E_BACKEND_BUSY' && /in progress for this address/.test(error.message));
    const other = bounded.enterLogin(from('192.0.2.2'), 1);
    first();
    first(); // idempotent: the second release gives back nobody else's place
    const again = bounded.enterLogin(from('192.0.2.1'), 1);
    assert.throws(() => bounded.enterLogin(from('192.0.2.1'), 1), (error: BackendUnavailableError) => error.code === 'E_BACKEND_BUSY');
    const exempt = [bounded.enterLogin(from('192.0.2.99'), 1), bounded.enterLogin(from('192.0.2.99'), 1)];
    for (const release of [other, again, ...exempt]) release();
  });

  it('when full, the oldest program still in its login, a second old, gives its place: ended, and the new one starts once it has exited', async () => {
    const old = await start('192.0.2.3', 1);
    await assert.rejects(start('192.0.2.4', 1), (error: BackendUnavailableError) => error.code === 'E_BACKEND_BUSY' && /running/.test(error.message));
    now += EVICTION_MIN_AGE_MS;
    const fresh = await start('192.0.2.4', 1);
    assert.equal(old.process.evicted, true);
    assert.equal(old.socket.destroyed, true, 'its socket is closed: its login fails');
    assert.equal(bounded.running, 1, 'it had exited before the new one started');
    // A logged-in program is never evicted.
    fresh.process.loggedIn();
    now += EVICTION_MIN_AGE_MS;
    await assert.rejects(start('192.0.2.5', 1), (error: BackendUnavailableError) => error.code === 'E_BACKEND_BUSY');
    await end(fresh);
  });
});
