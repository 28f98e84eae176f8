/**
 * The failed-login guard over the in-memory store, as createProtection builds it without Redis.
 * A repeated wrong password is not counted twice (a stale device retrying), but only for the
 * exact name the backend was given: under the default username_canonical, bob@d1 and bob@d2 share
 * bob's counters, yet on a multi-domain backend they are two accounts, and one password sprayed
 * across them must be counted once per account.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createProtection } from '../../src/auth/protection.js';
import { createLogger } from '../../src/observability/log.js';
import { NO_METRICS } from '../../src/observability/metrics.js';
import { testConfig } from '../harness/popwarden.js';

async function memoryGuard(userIpMaxFailures: number) {
  const base = testConfig({ backend: { host: '127.0.0.1', port: 110 } });
  const config = { ...base, rateLimit: { ...base.rateLimit, userIp: { ...base.rateLimit.userIp, maxFailures: userIpMaxFailures } } };
  return (await createProtection(config, createLogger('silent'), NO_METRICS)).guard;
}

async function refusedLogin(guard: Awaited<ReturnType<typeof memoryGuard>>, user: string, password: string): Promise<string> {
  const decision = await guard.reserve({ ip: '192.0.2.50', user, password: Buffer.from(password) });
  if (decision.kind === 'limited') return `limited:${decision.limiter}`;
  await decision.settle('refused');
  return 'judged';
}

describe('repeated wrong passwords', () => {
  it('the same password again for the same name is not counted twice', async () => {
    const guard = await memoryGuard(3);
    for (let i = 0; i < 10; i++) assert.equal(await refusedLogin(guard, 'alice', 'old-password'), 'judged');
  });

  it('one password sprayed across spellings that reach different backend accounts is counted for each', async () => {
    const guard = await memoryGuard(3);
    const outcomes: string[] = [];
    for (let i = 0; i < 6; i++) outcomes.push(await refusedLogin(guard, `bob@d${i}`, 'Winter2026!'));
    assert.deepEqual(outcomes, ['judged', 'judged', 'judged', 'limited:user_ip', 'limited:user_ip', 'limited:user_ip']);
  });
});
