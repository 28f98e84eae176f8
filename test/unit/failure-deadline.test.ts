import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { FAILURE_SPREAD, FailureDeadline, failureClock } from '../../src/session/failure-deadline.js';
import { createLogger } from '../../src/observability/log.js';

/** A FailureDeadline on a test clock; `random` places each answer in the spread (0: its grid point). */
function deadlineWithClock(random: () => number = () => 0): { deadline: FailureDeadline; clock: { now: number }; warnings: () => number } {
  const lines: string[] = [];
  const sink = new Writable({ write: (chunk: Buffer, _e, cb) => (lines.push(chunk.toString('utf8')), cb()) });
  const clock = { now: 1_000_000 };
  return {
    deadline: new FailureDeadline(createLogger('info', sink), () => clock.now, random),
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

test('failures that arrive together are answered spread over a quarter step, so guesses started together fall out of step', () => {
  const draws = [0, 0.5, 0.999];
  const { deadline, clock } = deadlineWithClock(() => draws.shift() ?? 0);
  const started = clock.now;
  clock.now += 30;
  const answers = [deadline.deadline(started, 2_000), deadline.deadline(started, 2_000), deadline.deadline(started, 2_000)];
  // A quarter of the 2 s step is 500 ms: the draws 0, 0.5 and 0.999 put the answers 0, 250 and 499 ms after the grid point.
  assert.deepEqual(answers, [started + 2_000, started + 2_250, started + 2_499]);
  assert.equal(new Set(answers).size, 3, 'three answer times, not one');
  assert.ok(answers.every((at) => at >= started + 2_000 && at < started + 2_000 * (1 + FAILURE_SPREAD)), 'each within its grid point and the spread');
});

test('the spread is drawn by default: a thousand failures at one instant are not answered at one time', () => {
  const deadline = new FailureDeadline(createLogger('info', new Writable({ write: (_c, _e, cb) => cb() })), () => 1_000_030);
  const answers = new Set(Array.from({ length: 1_000 }, () => deadline.deadline(1_000_000, 2_000)));
  assert.ok(answers.size > 100, `${answers.size} distinct answer times`);
});

test('the deadline reads a monotonic clock: a wall clock stepped back an hour does not hold a failure for that hour', async () => {
  const deadline = new FailureDeadline(createLogger('silent', new Writable({ write: (_c, _e, cb) => cb() })), undefined, () => 0);
  const started = failureClock();
  const wallClock = Date.now;
  // NTP stepping the clock back at boot, a VM resumed: the wall clock is an hour earlier now.
  const stepped = wallClock() - 3_600_000;
  Date.now = () => stepped;
  try {
    const answered = await Promise.race([
      deadline.wait(started, 20).then(() => 'answered'),
      new Promise<string>((resolve) => setTimeout(() => resolve('still waiting'), 2_000).unref()),
    ]);
    assert.equal(answered, 'answered', 'answered one step after the credentials, not an hour later');
  } finally {
    Date.now = wallClock;
  }
});

test('endWaits (shutdown) lets every waiting failure and Auth-Wait go on now, and any later one at once', async () => {
  const { deadline, clock } = deadlineWithClock();
  const started = clock.now;
  const order: string[] = [];
  // An hour's step on a clock that never moves: nothing but endWaits can end these waits.
  const waits = [deadline.wait(started, 3_600_000).then(() => order.push('failure')), deadline.waitAtLeast(started, 3_600_000).then(() => order.push('auth-wait'))];
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(order, [], 'both wait before endWaits');
  deadline.endWaits();
  await Promise.all(waits);
  assert.deepEqual(order.sort(), ['auth-wait', 'failure']);
  await deadline.wait(clock.now, 3_600_000);
});
