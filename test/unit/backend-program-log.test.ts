/**
 * The per-minute budget of backend-program log lines (issue 12.1: stderr rate-limited for the
 * whole process), with the clock passed in.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LogBudget } from '../../src/backend/programs.js';
import { MAX_BACKEND_STDERR_LINES_PER_MINUTE } from '../../src/config/limits.js';

test('at most MAX_BACKEND_STDERR_LINES_PER_MINUTE lines a minute; the next line after a pause says how many were left out', () => {
  const budget = new LogBudget();
  const start = 1_000_000;
  for (let i = 0; i < MAX_BACKEND_STDERR_LINES_PER_MINUTE; i++) assert.equal(budget.take(start + i), 0);
  assert.equal(budget.take(start + 100), undefined);
  assert.equal(budget.take(start + 59_999), undefined);
  assert.equal(budget.take(start + 60_000), 2, 'a new minute: the two suppressed lines are counted');
  assert.equal(budget.take(start + 60_001), 0);
});
