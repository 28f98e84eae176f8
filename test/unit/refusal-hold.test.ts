/**
 * net/refusal-hold.ts: refused connections wait, bounded, before their close (issue 14.3), on a
 * clock and timer driven by hand.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { RefusalHold, type HoldClock } from '../../src/net/refusal-hold.js';

function manualClock(): HoldClock & { advance(ms: number): void; pending(): number } {
  let now = 0;
  let timers: { at: number; run: () => void }[] = [];
  return {
    now: () => now,
    schedule(ms, run) {
      const timer = { at: now + ms, run };
      timers.push(timer);
      return { cancel: () => void (timers = timers.filter((t) => t !== timer)) };
    },
    advance(ms) {
      now += ms;
      const due = timers.filter((t) => t.at <= now);
      timers = timers.filter((t) => t.at > now);
      for (const t of due) t.run();
    },
    pending: () => timers.length,
  };
}

const socket = (): Socket => ({}) as Socket;

describe('RefusalHold', () => {
  it('closes each held connection once its hold is over, in the order they came, with one timer', () => {
    const clock = manualClock();
    const hold = new RefusalHold(1_000, 10, clock);
    const closed: string[] = [];
    hold.hold(socket(), () => closed.push('a'));
    clock.advance(400);
    hold.hold(socket(), () => closed.push('b'));
    assert.equal(clock.pending(), 1);
    clock.advance(599);
    assert.deepEqual(closed, []);
    clock.advance(1);
    assert.deepEqual(closed, ['a']);
    assert.equal(hold.size, 1);
    clock.advance(400);
    assert.deepEqual(closed, ['a', 'b']);
    assert.equal(hold.size, 0);
    assert.equal(clock.pending(), 0, 'no timer left behind');
  });

  it('is bounded: past `max` held, a refusal closes at once', () => {
    const clock = manualClock();
    const hold = new RefusalHold(1_000, 2, clock);
    const closed: number[] = [];
    for (let i = 0; i < 4; i++) hold.hold(socket(), () => closed.push(i));
    assert.deepEqual(closed, [2, 3]);
    assert.equal(hold.size, 2);
  });

  it('releaseAll() closes every held connection now (shutdown); a hold of 0 closes at once', () => {
    const clock = manualClock();
    const hold = new RefusalHold(1_000, 10, clock);
    const closed: number[] = [];
    for (let i = 0; i < 3; i++) hold.hold(socket(), () => closed.push(i));
    hold.releaseAll();
    assert.deepEqual(closed, [0, 1, 2]);
    assert.equal(clock.pending(), 0);
    const off = new RefusalHold(0, 10, clock);
    off.hold(socket(), () => closed.push(9));
    assert.deepEqual(closed, [0, 1, 2, 9]);
  });
});
