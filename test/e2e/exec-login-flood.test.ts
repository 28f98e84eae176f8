/**
 * An `exec:` backend under a flood of wrong passwords. Each login starts one program (popa3d, as
 * inetd would), and a real popa3d holds a wrong password for about 2 s (pam_unix's failure delay)
 * before it answers. Attackers who send wrong passwords in parallel therefore hold a program each,
 * and enough of them hold every place of limits.max_backend_processes. The owner must still get
 * in: one address holds at most limits.max_backend_logins_per_ip programs still in their login,
 * and when the bound is full the oldest program still in its login (at least a second old, by the
 * test's clock) is ended to make room, as limits.max_sessions does for connections.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { EVICTION_MIN_AGE_MS } from '../../src/config/limits.js';
import { startLegacyServer, type LegacyServer } from '../harness/legacy.js';
import { sampleMaildrop } from '../harness/maildrop.js';
import { backendProgramsExited, startTestProxy, type TestProxy } from '../harness/popwarden.js';
import { RawClient } from '../harness/raw-client.js';

const { alice, bob } = sampleMaildrop();

/** A clock the test moves: popwarden's idea of how old each program is. */
function testClock(): { now: () => number; advance: (ms: number) => void } {
  let now = 1_000_000;
  return { now: () => now, advance: (ms) => void (now += ms) };
}

/** A TLS session from `source` that has sent USER and waits for its PASS. */
async function atPass(proxy: TestProxy, source: string, user: string): Promise<RawClient> {
  const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile, source);
  assert.match(await client.readLine(), /^\+OK/);
  assert.match(await client.command(`USER ${user}`), /^\+OK/);
  return client;
}

describe('exec: wrong passwords in parallel cannot hold every backend program', { timeout: 120_000 }, () => {
  let server: LegacyServer;
  let proxy: TestProxy;
  const clock = testClock();

  before(async () => {
    server = await startLegacyServer({ server: 'popa3d' });
    proxy = await startTestProxy({
      backend: { address: { kind: 'exec', ...server.exec, environment: {}, cwd: undefined }, trustLoopback: undefined },
      limits: { maxBackendProcesses: 4, maxBackendLoginsPerIp: 2 },
      now: clock.now,
    });
  });
  after(async () => {
    await proxy?.stop();
    await server?.stop();
  });

  test('the owner logs in while attackers from two addresses hold every program with wrong passwords', async () => {
    const owner = await atPass(proxy, '127.0.0.9', alice.user);
    const attackers = await Promise.all(['127.0.0.2', '127.0.0.2', '127.0.0.3', '127.0.0.3'].map((source) => atPass(proxy, source, bob.user)));
    const third = await atPass(proxy, '127.0.0.2', bob.user);
    try {
      // Four wrong passwords at once: four popa3d, each in its 2 s failure delay.
      // (A rejection becomes its text: the assertion below says what was expected.)
      const replies = attackers.map((client, n) => client.command(`PASS wrong-${n}`, 15_000).catch((error: unknown) => String(error)));
      let sent = 0;
      await proxy.waitForLog((l) => l['action'] === 'logging in to backend' && ++sent === 4, { timeoutMs: 15_000 });

      // A third login from an address that already has two in progress: refused at once, nothing started.
      const started = proxy.logs().filter((l) => l['msg'] === 'backend program started').length;
      assert.equal(await third.command('PASS wrong-third', 15_000), '-ERR [SYS/TEMP] Mail server unavailable, try again later');
      const share = proxy.logs().find((l) => l['code'] === 'E_BACKEND_BUSY');
      assert.match(String(share?.['reason']), /2 backend logins are in progress for this address \(limits.max_backend_logins_per_ip\)/);
      assert.equal(proxy.logs().filter((l) => l['msg'] === 'backend program started').length, started);

      // The bound is full of logins a second old: the owner's login ends the oldest and gets in.
      clock.advance(EVICTION_MIN_AGE_MS);
      assert.equal(await owner.command(`PASS ${alice.pass}`, 15_000), '+OK Logged in', proxy.logText().slice(-3_000));
      assert.match(await owner.command('STAT'), /^\+OK \d+ \d+/);

      // One attacker lost its program (a hang-up at the credentials step: counted as a failure);
      // the other three got popa3d's refusal.
      const answers = (await Promise.all(replies)).sort();
      assert.deepEqual(answers, [
        '-ERR [AUTH] Authentication failed',
        '-ERR [AUTH] Authentication failed',
        '-ERR [AUTH] Authentication failed',
        '-ERR [SYS/TEMP] Mail server unavailable, try again later',
      ]);
      const evicted = proxy.logs().filter((l) => l['msg'] === 'backend program ended to make room for another login');
      assert.equal(evicted.length, 1, JSON.stringify(evicted));
      assert.match(await owner.command('QUIT'), /^\+OK/);
    } finally {
      owner.destroy();
      third.destroy();
      for (const client of attackers) client.destroy();
    }
    await backendProgramsExited(proxy);
  });
});
