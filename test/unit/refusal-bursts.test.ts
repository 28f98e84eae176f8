/** Refusals by a per-address rate are logged once per burst, not once per connection (issue 14.3). */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RefusalBursts } from '../../src/net/refusal-bursts.js';

describe('RefusalBursts', () => {
  it('logs the first refusal, then one line a window with the number refused quietly in between', () => {
    let now = 0;
    const bursts = new RefusalBursts(60_000, 100, () => now);
    assert.deepEqual(bursts.note('too_many_connections', '192.0.2.1'), { log: true, refusedQuietly: 0 });
    for (let i = 0; i < 500; i++) assert.deepEqual(bursts.note('too_many_connections', '192.0.2.1'), { log: false });
    // Another reason or another address is its own burst; IPv6 counts by its /64.
    assert.equal(bursts.note('too_many_connections_per_minute', '192.0.2.1').log, true);
    assert.equal(bursts.note('too_many_connections', '2001:db8::1').log, true);
    assert.equal(bursts.note('too_many_connections', '2001:db8::2').log, false);
    now = 60_000;
    assert.deepEqual(bursts.note('too_many_connections', '192.0.2.1'), { log: true, refusedQuietly: 500 });
  });

  it('keeps at most maxKeys addresses, and forgets those whose window is over', () => {
    let now = 0;
    const bursts = new RefusalBursts(1_000, 3, () => now);
    for (let i = 1; i <= 5; i++) assert.equal(bursts.note('r', `192.0.2.${i}`).log, true);
    // 192.0.2.1 was forgotten to make room: logged afresh.
    assert.equal(bursts.note('r', '192.0.2.1').log, true);
    assert.equal(bursts.note('r', '192.0.2.5').log, false);
    now = 1_000;
    assert.deepEqual(bursts.note('r', '192.0.2.9'), { log: true, refusedQuietly: 0 });
    // 192.0.2.4's burst ended and it was forgotten; 192.0.2.5's still carries its count.
    assert.deepEqual(bursts.note('r', '192.0.2.5'), { log: true, refusedQuietly: 1 });
  });
});
