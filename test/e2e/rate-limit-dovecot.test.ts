/**
 * The failed-login limits in front of a real Dovecot (issue 9): spellings of one account share its
 * counters, and parallel guesses cannot outrun the limits while Dovecot takes its time to refuse
 * them. Clients bind distinct loopback sources (127.0.0.x) to stand for distinct addresses.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';
import { login, startProtected, type Protected } from '../harness/redis.js';

const AUTH_FAILED = '-ERR [AUTH] Authentication failed';
const BLOCKED = '-ERR [SYS/TEMP] Too many failed logins, try again later';
/** Dovecot delays each failure (2 s, more under its auth penalty): room for that in every step. */
const SLOW_BACKEND = { backendStepMs: 30_000 };
const PATIENT = 40_000;

describe('spellings of one account (issue 9.1)', { timeout: 240_000 }, () => {
  let dovecot: Dovecot;
  let running: Protected | undefined;
  before(async () => {
    // auth_username_format = %Ln: Dovecot drops the domain, so alice@anything is alice.
    // Its auth penalty is off here: it only slows this test down (issue 9.4 has its own test).
    dovecot = await startDovecot({ profile: 'all', authUsernameFormat: '%Ln', authPenalty: false });
  });
  after(async () => {
    await running?.stop();
    await dovecot.stop();
  });

  test('12 guesses as alice@v0..alice@v11 block alice: the right password as alice@final never reaches Dovecot', async () => {
    running = await startProtected(dovecot, { timeouts: SLOW_BACKEND });
    const { proxy } = running;
    const replies: string[] = [];
    for (let i = 0; i < 12; i++) replies.push(await login(proxy, '127.0.0.2', `alice@v${i}`, `guess-${i}`, PATIENT));
    assert.deepEqual(replies.slice(0, 10), Array<string>(10).fill(AUTH_FAILED), replies.join(' | '));
    assert.deepEqual(replies.slice(10), [BLOCKED, BLOCKED], 'the 11th spelling is the same account');
    assert.equal(await login(proxy, '127.0.0.2', 'alice@final', 's3cret!pw', PATIENT), BLOCKED);
    assert.equal(dovecot.loginCount(), 0, 'Dovecot saw no successful login');
    // Dovecot does strip the domain: the same password from another address logs in.
    assert.equal(await login(proxy, '127.0.0.3', 'alice@final', 's3cret!pw', PATIENT), '+OK Logged in');
    assert.equal(dovecot.loginCount('alice'), 1);
  });
});
