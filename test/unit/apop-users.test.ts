import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ApopUsers } from '../../src/backend/apop-users.js';
import type { UsernameCanonical } from '../../src/config/types.js';

/** rate_limit.username_canonical's default: solid-pop3d's. */
const ACCOUNTS: UsernameCanonical = { lowerCase: true, realmSeparators: '@%', pattern: undefined };

describe('ApopUsers: how each user logged in to a backend that offers APOP', () => {
  it('remembers per backend and user, and forgets an entry when it expires', () => {
    const users = new ApopUsers(ACCOUNTS, 10, 1_000);
    users.remember('mail:110', 'alice', 'cleartext', 0);
    users.remember('mail:110', 'bob', 'apop', 0);
    assert.equal(users.get('mail:110', 'alice', 999), 'cleartext');
    assert.equal(users.get('mail:110', 'bob', 999), 'apop');
    assert.equal(users.get('other:110', 'alice', 999), undefined, 'another backend knows nothing of alice');
    assert.equal(users.get('mail:110', 'alice', 1_000), undefined, 'expired');
    assert.equal(users.size, 1, 'the expired entry is gone');
  });

  it('is bounded: past the bound the entry written longest ago goes, and a fresh success renews one', () => {
    const users = new ApopUsers(ACCOUNTS, 2, 60_000);
    users.remember('mail:110', 'a', 'apop', 0);
    users.remember('mail:110', 'b', 'apop', 0);
    users.remember('mail:110', 'a', 'apop', 1); // renewed: b is now the oldest
    users.remember('mail:110', 'c', 'cleartext', 2);
    assert.equal(users.size, 2);
    assert.equal(users.get('mail:110', 'b', 3), undefined);
    assert.equal(users.get('mail:110', 'a', 3), 'apop');
    assert.equal(users.get('mail:110', 'c', 3), 'cleartext');
  });

  it('a refused retry is remembered for its own while, apart: guesses cannot push out what successes taught, and a success ends it', () => {
    const users = new ApopUsers(ACCOUNTS, 1, 60_000, 1_000);
    users.remember('mail:110', 'alice', 'apop', 0);
    users.remember('mail:110', 'x1', 'retry-refused', 0);
    users.remember('mail:110', 'x2', 'retry-refused', 0); // the bound is 1: x1 goes, alice stays
    assert.equal(users.get('mail:110', 'alice', 1), 'apop');
    assert.equal(users.get('mail:110', 'x1', 1), undefined);
    assert.equal(users.get('mail:110', 'x2', 999), 'retry-refused');
    assert.equal(users.get('mail:110', 'x2', 1_000), undefined, 'expired after its own, shorter while');
    users.remember('mail:110', 'bob', 'retry-refused', 2_000);
    assert.equal(users.cleartextWorks('mail:110'), false, 'no login in clear has worked here yet');
    users.remember('mail:110', 'bob', 'cleartext', 2_001);
    assert.equal(users.cleartextWorks('mail:110'), true);
    assert.equal(users.cleartextWorks('other:110'), false);
    assert.equal(users.get('mail:110', 'bob', 2_002), 'cleartext');
    assert.equal(users.size, 1, 'the success took the one place of successes');
  });

  it('keys users by account, as the limits do: another spelling of alice is alice', () => {
    const users = new ApopUsers(ACCOUNTS);
    users.remember('mail:110', 'alice', 'apop');
    for (const spelling of ['Alice', ' alice', 'alice@anything', 'ALICE%x']) assert.equal(users.get('mail:110', spelling), 'apop', spelling);
    assert.equal(users.get('mail:110', 'alicia'), undefined);
  });
});
