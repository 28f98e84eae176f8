/** Refusals by a per-address rate are logged once per burst, not once per connection (issue 14.3). */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RefusalBursts, type EndedBurst } from '../../src/net/refusal-bursts.js';

/** A RefusalBursts on the test's clock and timer: `fire()` runs the one sweep armed, if any. */
function bursts(windowMs: number, maxKeys: number) {
  let now = 0;
  const ended: EndedBurst[] = [];
  const armed: { run: () => void; at: number }[] = [];
  const table = new RefusalBursts({
    windowMs,
    maxKeys,
    ended: (burst) => void ended.push(burst),
    now: () => now,
    schedule: (run, ms) => {
      const timer = { run, at: now + ms };
      armed.push(timer);
      return () => void armed.splice(armed.indexOf(timer), 1);
    },
  });
  return {
    table,
    ended,
    armed,
    advance: (ms: number) => void (now += ms),
    /** Moves the clock to the armed sweep's time and runs it. */
    fire: () => {
      const timer = armed.shift();
      assert.ok(timer !== undefined, 'a sweep is armed');
      now = Math.max(now, timer.at);
      timer.run();
    },
  };
}

describe('RefusalBursts', () => {
  it('logs the first refusal, then one line a window with the number refused quietly in between', () => {
    const { table, advance } = bursts(60_000, 100);
    assert.deepEqual(table.note('too_many_connections', '192.0.2.1'), { log: true, refusedQuietly: 0 });
    for (let i = 0; i < 500; i++) assert.deepEqual(table.note('too_many_connections', '192.0.2.1'), { log: false });
    // Another reason or another address is its own burst; IPv6 counts by its /64.
    assert.equal(table.note('too_many_connections_per_minute', '192.0.2.1').log, true);
    assert.equal(table.note('too_many_connections', '2001:db8::1').log, true);
    assert.equal(table.note('too_many_connections', '2001:db8::2').log, false);
    advance(60_000);
    assert.deepEqual(table.note('too_many_connections', '192.0.2.1'), { log: true, refusedQuietly: 500 });
  });

  it('tells the refusals after the last line when the window ends, from one sweep for every address', () => {
    const { table, ended, armed, advance, fire } = bursts(60_000, 100);
    table.note('too_many_connections', '192.0.2.1');
    advance(10_000);
    table.note('too_many_connections', '2001:db8::1');
    for (let i = 0; i < 7; i++) table.note('too_many_connections', '192.0.2.1');
    for (let i = 0; i < 3; i++) table.note('too_many_connections', '2001:db8::2');
    assert.equal(armed.length, 1, 'one timer for the table, not one per address');
    assert.deepEqual(ended, []);
    fire();
    assert.deepEqual(ended, [{ reason: 'too_many_connections', peer: '192.0.2.1', refusedQuietly: 7 }]);
    fire();
    assert.deepEqual(ended.at(-1), { reason: 'too_many_connections', peer: '2001:db8::/64', refusedQuietly: 3 });
    assert.equal(armed.length, 0, 'nothing left to sweep: no timer');
    // Ended and told: the next refusal starts a burst of its own.
    assert.deepEqual(table.note('too_many_connections', '192.0.2.1'), { log: true, refusedQuietly: 0 });
  });

  it('a burst whose window passes without a quiet refusal is forgotten without a word', () => {
    const { table, ended, fire } = bursts(1_000, 100);
    table.note('r', '192.0.2.1');
    fire();
    assert.deepEqual(ended, []);
    assert.equal(table.note('r', '192.0.2.1').log, true);
  });

  it('keeps at most maxKeys addresses: the one logged longest ago goes, its quiet refusals told', () => {
    const { table, ended } = bursts(1_000, 3);
    for (let i = 1; i <= 3; i++) assert.equal(table.note('r', `192.0.2.${i}`).log, true);
    table.note('r', '192.0.2.1');
    assert.equal(table.note('r', '192.0.2.4').log, true);
    assert.deepEqual(ended, [{ reason: 'r', peer: '192.0.2.1', refusedQuietly: 1 }]);
    // 192.0.2.2 went to make room for 192.0.2.1: logged afresh.
    assert.equal(table.note('r', '192.0.2.1').log, true);
    assert.equal(table.note('r', '192.0.2.4').log, false);
  });

  it('close() tells every burst still going and stops the sweep', () => {
    const { table, ended, armed } = bursts(60_000, 100);
    table.note('r', '192.0.2.1');
    table.note('r', '192.0.2.1');
    table.note('r', '192.0.2.2');
    table.close();
    assert.deepEqual(ended, [{ reason: 'r', peer: '192.0.2.1', refusedQuietly: 1 }]);
    assert.equal(armed.length, 0);
  });

  it('reads the monotonic clock by default: a wall clock stepped back does not hold a burst open', (t) => {
    let monotonic = 5_000;
    t.mock.method(performance, 'now', () => monotonic);
    t.mock.timers.enable({ apis: ['Date'], now: 1_800_000_000_000 });
    const table = new RefusalBursts({ windowMs: 60_000, maxKeys: 100, ended: () => undefined });
    try {
      table.note('r', '192.0.2.1');
      table.note('r', '192.0.2.1');
      // A minute later NTP steps the wall clock an hour back: on it, the window would last an hour more.
      monotonic += 60_000;
      t.mock.timers.setTime(1_800_000_000_000 - 3_600_000);
      assert.deepEqual(table.note('r', '192.0.2.1'), { log: true, refusedQuietly: 1 });
    } finally {
      table.close();
    }
  });
});
