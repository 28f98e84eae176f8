/**
 * The failed-login guard over the in-memory store, as createProtection builds it without Redis.
 * A repeated wrong password is not counted twice (a stale device retrying), but only for the
 * exact name the backend was given: under the default username_canonical, bob@d1 and bob@d2 share
 * bob's counters, yet on a multi-domain backend they are two accounts, and one password sprayed
 * across them must be counted once per account. And close() (shutdown) closes the store only once
 * every reservation is settled, or after its bound.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createProtection } from '../../src/auth/protection.js';
import { createLogger } from '../../src/observability/log.js';
import { NO_METRICS } from '../../src/observability/metrics.js';
import { testConfig } from '../harness/popwarden.js';
import { LogCapture } from '../harness/log-capture.js';
import { RateLimitGuard } from '../../src/auth/rate-limit/guard.js';
import type { Settlement } from '../../src/auth/rate-limit/store.js';
import { CidrList } from '../../src/net/cidr.js';

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

describe('close (shutdown)', () => {
  /** A guard over a store that holds every reservation and records what becomes of it, and of the store. */
  function recordingGuard(events: string[], log: LogCapture, closeWaitMs?: number): RateLimitGuard {
    const note = async (what: string): Promise<void> => void events.push(what);
    const settleIn: Settlement = { release: () => note('released'), fail: () => note('failed').then(() => true), succeed: () => note('succeeded') };
    return new RateLimitGuard({
      config: testConfig({ backend: { host: '127.0.0.1', port: 110 } }).rateLimit,
      store: { reserve: () => Promise.resolve({ reservation: { kind: 'reserved' }, settleIn }) },
      hmacKey: Buffer.alloc(32),
      allow: new CidrList([]),
      log: createLogger('warn', log.stream),
      close: () => note('store closed'),
      ...(closeWaitMs === undefined ? {} : { closeWaitMs }),
    });
  }
  const attempt = { ip: '192.0.2.60', user: 'alice', password: Buffer.from('wrong') };

  it('a reservation still held (a failure waiting for its deadline) is settled before the store closes', async () => {
    const events: string[] = [];
    const guard = recordingGuard(events, new LogCapture());
    const decision = await guard.reserve(attempt);
    assert.equal(decision.kind, 'allowed');
    const closed = guard.close().then(() => events.push('close resolved'));
    // A close that did not wait would have closed the store by the next turn.
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(events, []);
    if (decision.kind === 'allowed') void decision.settle('refused');
    await closed;
    assert.deepEqual(events, ['failed', 'store closed', 'close resolved']);
  });

  it('a reservation never settled (a login still at its backend) is waited for no longer than the bound, and said so', async () => {
    const events: string[] = [];
    const log = new LogCapture();
    const guard = recordingGuard(events, log, 20);
    await guard.reserve(attempt);
    await guard.close();
    assert.deepEqual(events, ['store closed']);
    const warning = await log.waitFor((e) => String(e['msg']).startsWith('stopping with logins still under way'));
    assert.equal(warning['logins'], 1);
  });

  it('the wait begun while the proxy closes (settleReservations) is the one close() finishes: the bound is spent once', async () => {
    const events: string[] = [];
    const log = new LogCapture();
    const guard = recordingGuard(events, log, 20);
    await guard.reserve(attempt);
    const first = guard.settleReservations();
    assert.equal(guard.settleReservations(), first, 'one wait, however often asked');
    await first;
    await guard.close();
    assert.deepEqual(events, ['store closed']);
    const warnings = log.entries().filter((e) => String(e['msg']).startsWith('stopping with logins still under way'));
    assert.equal(warnings.length, 1);
  });
});
