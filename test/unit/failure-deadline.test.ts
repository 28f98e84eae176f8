import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { FailureDeadline } from '../../src/session/failure-deadline.js';
import { createLogger } from '../../src/observability/log.js';

function deadlineWithClock(): { deadline: FailureDeadline; clock: { now: number }; warnings: () => number } {
  const lines: string[] = [];
  const sink = new Writable({ write: (chunk: Buffer, _e, cb) => (lines.push(chunk.toString('utf8')), cb()) });
  const clock = { now: 1_000_000 };
  return {
    deadline: new FailureDeadline(createLogger('info', sink), () => clock.now),
    clock,
    warnings: () => lines.filter((l) => l.includes('auth_failure_delay')).length,
  };
}

test('a failure faster than the delay is answered one step after the credentials arrived', () => {
  const { deadline, clock } = deadlineWithClock();
  const started = clock.now;
  clock.now += 30;
  assert.equal(deadline.deadline(started, 2_000), started + 2_000);
});

test('a slow refusal moves every later failure to the same grid point until the window has passed', () => {
  const { deadline, clock, warnings } = deadlineWithClock();
  let started = clock.now;
  clock.now += 3_100; // a wrong password, hashed slowly
  assert.equal(deadline.deadline(started, 2_000), started + 4_000);
  started = clock.now;
  clock.now += 5; // an unknown user, refused at once
  assert.equal(deadline.deadline(started, 2_000), started + 4_000, 'same answer time as the slow refusal');
  assert.equal(warnings(), 1);
  clock.now += 16 * 60_000;
  started = clock.now;
  clock.now += 5;
  assert.equal(deadline.deadline(started, 2_000), started + 2_000, 'forgotten after the window');
});

test('the slow-backend warning is rate-limited', () => {
  const { deadline, clock, warnings } = deadlineWithClock();
  for (let i = 0; i < 20; i++) {
    const started = clock.now;
    clock.now += 2_500;
    deadline.deadline(started, 2_000);
  }
  assert.equal(warnings(), 1);
});

test('no delay configured: answered at once', () => {
  const { deadline, clock } = deadlineWithClock();
  const started = clock.now;
  clock.now += 3_000;
  assert.ok(deadline.deadline(started, 0) <= clock.now);
});
