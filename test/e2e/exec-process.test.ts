/**
 * `exec:` in the real popwarden process (issue 12.1: "no zombie ever"): sessions that QUIT, that
 * the client drops, and that run at the same time, then the process table of popwarden's own pid
 * in /proc: no backend program left, no zombie, once every exit has been logged (awaited).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnPopwarden } from '../harness/popwarden-process.js';
import { childrenOf } from '../harness/proc.js';
import { RawClient } from '../harness/raw-client.js';
import { writeTinyInetdServer } from '../harness/tiny-inetd.js';

const dir = mkdtempSync(join(tmpdir(), 'popwarden-exec-process-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const serve = writeTinyInetdServer(dir);

test('popwarden reaps every program: no child of its own left and no zombie after QUIT, dropped and parallel sessions', { timeout: 60_000 }, async () => {
  const popwarden = await spawnPopwarden({ backend: `exec:${serve}` });
  try {
    // tsx's esbuild service runs beside popwarden from the start: not a backend program.
    const before = childrenOf(popwarden.pid).map((p) => p.pid);
    const session = async (end: 'quit' | 'drop'): Promise<void> => {
      const client = await RawClient.tls(popwarden.host, popwarden.tlsPort, popwarden.caFile);
      try {
        await client.readLine();
        await client.command('USER alice');
        assert.match(await client.command('PASS secret', 10_000), /^\+OK/);
        if (end === 'quit') assert.match(await client.command('QUIT'), /^\+OK/);
      } finally {
        client.destroy();
      }
    };
    await Promise.all([session('quit'), session('drop'), session('quit'), session('drop'), session('drop')]);
    let exited = 0;
    await popwarden.waitForLog((l) => l['msg'] === 'backend program exited' && ++exited === 5, { timeoutMs: 20_000 });
    assert.equal(popwarden.logs().filter((l) => l['msg'] === 'backend program started').length, 5);
    const left = childrenOf(popwarden.pid).filter((p) => p.state === 'Z' || !before.includes(p.pid));
    assert.deepEqual(left.map((p) => `${p.pid} ${p.comm} ${p.state}`), []);
    assert.equal(popwarden.crashReport(), undefined);
  } finally {
    await popwarden.stop();
  }
});
