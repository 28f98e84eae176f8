/**
 * Redis Sentinel as the rate-limit store (issue 4 point 9): popwarden asks a real sentinel
 * (`redis-server --sentinel`) for the master of "mymaster" and keeps its counts there.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFakeBackend, legacyScript, type FakeBackend } from '../harness/fake-backend.js';
import { freePort, waitForPort } from '../harness/ports.js';
import { login, startProtected, startRedis, type Protected, type RedisServer } from '../harness/redis.js';

describe('rate limiting through Redis Sentinel', { timeout: 60_000 }, () => {
  let master: RedisServer;
  let sentinel: ChildProcess;
  let sentinelPort: number;
  let sentinelDir: string;
  let backend: FakeBackend;
  let protectedProxy: Protected | undefined;

  before(async () => {
    master = await startRedis();
    backend = await startFakeBackend(legacyScript());
    sentinelPort = await freePort();
    sentinelDir = mkdtempSync(join(tmpdir(), 'popwarden-sentinel-'));
    const conf = join(sentinelDir, 'sentinel.conf'); // sentinel rewrites its config: it must be writable
    writeFileSync(conf, [`port ${sentinelPort}`, 'bind 127.0.0.1', `dir ${sentinelDir}`, `sentinel monitor mymaster 127.0.0.1 ${master.port} 1`, ''].join('\n'));
    sentinel = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' });
    await waitForPort('127.0.0.1', sentinelPort, 10_000);
  });
  after(async () => {
    await protectedProxy?.stop();
    sentinel.kill('SIGKILL');
    rmSync(sentinelDir, { recursive: true, force: true });
    await backend.stop();
    await master.stop();
  });

  test('failures are counted in the master the sentinel names', async () => {
    protectedProxy = await startProtected(backend, {
      redis: { kind: 'sentinel', sentinels: [{ host: '127.0.0.1', port: sentinelPort }], name: 'mymaster' },
      rateLimit: { keyPrefix: 's1' },
    });
    for (let i = 1; i <= 3; i++) {
      assert.equal(await login(protectedProxy.proxy, '127.0.0.40', 'alice', `wrong-${i}`), '-ERR [AUTH] Authentication failed');
    }
    assert.equal(await master.cli('get', 's1:uip:{alice@127.0.0.40}'), '3');
    assert.equal(protectedProxy.protection.storeUp(), true);
    assert.ok(!protectedProxy.logs.some((l) => l.includes('unavailable')), 'no store error through the sentinel');
  });
});
