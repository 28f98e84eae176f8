/** sharedBySuite: set up once before a describe()'s tests, stopped after them, newest first. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { sharedBySuite } from './suite.js';

const events: string[] = [];
const server = (name: string) => ({ name, stop: () => void events.push(`stop ${name}`) });

describe('a suite sharing two servers and a client', () => {
  const suite = sharedBySuite(async (keep) => {
    events.push('set up');
    const first = keep(server('first'));
    const second = keep(server('second'));
    const client = keep({ name: 'client' }, (c) => void events.push(`disconnect ${c.name}`));
    return { first, second, client };
  });

  test('the tests get what the set-up made, made once', () => {
    assert.equal(suite().second.name, 'second');
    assert.equal(suite().client.name, 'client');
    assert.deepEqual(events, ['set up']);
  });
});

describe('after that suite', () => {
  test('everything it kept was stopped once, newest first', () => {
    assert.deepEqual(events, ['set up', 'disconnect client', 'stop second', 'stop first']);
  });
});
