import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ApopUsers } from '../../src/backend/apop-users.js';
import type { UsernameCanonical } from '../../src/config/types.js';

/** rate_limit.username_canonical's default: solid-pop3d's. */
const ACCOUNTS: UsernameCanonical = { lowerCase: true, realmSeparators: '@%', pattern: undefined };
/** The client address the logins come from. */
const HOME = '192.0.2.10';

describe('ApopUsers: how each user logged in to a backend that offers APOP', () => {
  it('remembers per backend and user, and forgets an entry when it expires', () => {
    const users = new ApopUsers(ACCOUNTS, 10, 1_000);
    users.remember('mail:110', 'alice', 'cleartext', HOME, 0);
    users.remember('mail:110', 'bob', 'apop', HOME, 0);
    assert.equal(users.get('mail:110', 'alice', HOME, 999), 'cleartext');
    assert.equal(users.get('mail:110', 'bob', HOME, 999), 'apop');
    assert.equal(users.get('other:110', 'alice', HOME, 999), undefined, 'another backend knows nothing of alice');
    assert.equal(users.get('mail:110', 'alice', HOME, 1_000), undefined, 'expired');
    assert.equal(users.size, 1, 'the expired entry is gone');
  });

  it('is bounded: past the bound the entry written longest ago goes, and a fresh success renews one', () => {
    const users = new ApopUsers(ACCOUNTS, 2, 60_000);
    users.remember('mail:110', 'a', 'apop', HOME, 0);
    users.remember('mail:110', 'b', 'apop', HOME, 0);
    users.remember('mail:110', 'a', 'apop', HOME, 1); // renewed: b is now the oldest
    users.remember('mail:110', 'c', 'cleartext', HOME, 2);
    assert.equal(users.size, 2);
    assert.equal(users.get('mail:110', 'b', HOME, 3), undefined);
    assert.equal(users.get('mail:110', 'a', HOME, 3), 'apop');
    assert.equal(users.get('mail:110', 'c', HOME, 3), 'cleartext');
  });

  it('a refused retry is remembered for its own while, apart: guesses cannot push out what successes taught, and a success ends it', () => {
    const users = new ApopUsers(ACCOUNTS, 1, 60_000, 1_000);
    users.remember('mail:110', 'alice', 'apop', HOME, 0);
    users.remember('mail:110', 'x1', 'retry-refused', HOME, 0);
    users.remember('mail:110', 'x2', 'retry-refused', HOME, 0); // the bound is 1: x1 goes, alice stays
    assert.equal(users.get('mail:110', 'alice', HOME, 1), 'apop');
    assert.equal(users.get('mail:110', 'x1', HOME, 1), undefined);
    assert.equal(users.get('mail:110', 'x2', HOME, 999), 'retry-refused');
    assert.equal(users.get('mail:110', 'x2', HOME, 1_000), undefined, 'expired after its own, shorter while');
    users.remember('mail:110', 'bob', 'retry-refused', HOME, 2_000);
    assert.equal(users.cleartextWorks('mail:110'), false, 'no login in clear has worked here yet');
    users.remember('mail:110', 'bob', 'cleartext', HOME, 2_001);
    assert.equal(users.cleartextWorks('mail:110'), true);
    assert.equal(users.cleartextWorks('other:110'), false);
    assert.equal(users.get('mail:110', 'bob', HOME, 2_002), 'cleartext');
    assert.equal(users.size, 1, 'the success took the one place of successes');
  });

  it('keys users by account, as the limits do: another spelling of alice is alice', () => {
    const users = new ApopUsers(ACCOUNTS);
    users.remember('mail:110', 'alice', 'apop', HOME);
    for (const spelling of ['Alice', ' alice', 'alice@anything', 'ALICE%x']) assert.equal(users.get('mail:110', spelling, HOME), 'apop', spelling);
    assert.equal(users.get('mail:110', 'alicia', HOME), undefined);
  });

  it("a refused retry switches the user to clear from the guesser's address only: elsewhere the user's own APOP secret is still tried", () => {
    const users = new ApopUsers(ACCOUNTS, 10, 60_000, 1_000);
    users.remember('mail:110', 'alice', 'retry-refused', '198.51.100.7', 0);
    assert.equal(users.get('mail:110', 'alice', '198.51.100.7', 1), 'retry-refused');
    assert.equal(users.get('mail:110', 'Alice', '198.51.100.7', 1), 'retry-refused', 'by account');
    assert.equal(users.get('mail:110', 'alice', HOME, 1), undefined, "the owner's address: APOP first, as for anyone unknown");
    users.remember('mail:110', 'bob', 'retry-refused', '2001:db8:1:2::a', 0);
    assert.equal(users.get('mail:110', 'bob', '2001:db8:1:2::b', 1), 'retry-refused', 'IPv6 by its /64');
    assert.equal(users.get('mail:110', 'bob', '2001:db8:1:3::a', 1), undefined);
    // A success from one address ends that address's mark; what it teaches holds everywhere.
    users.remember('mail:110', 'alice', 'apop', HOME, 2);
    assert.equal(users.get('mail:110', 'alice', '198.51.100.7', 3), 'apop');
  });
});
