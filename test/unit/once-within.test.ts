import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { DeadlineError, onceWithin } from '../../src/net/once-within.js';

/** Listeners left on `emitter` for the names onceWithin uses. */
const leftOver = (emitter: EventEmitter): number => ['drain', 'error', 'close'].reduce((n, name) => n + emitter.listenerCount(name), 0);

describe('onceWithin', () => {
  test('resolves on the event and leaves no listener, also when the event comes again', async () => {
    const emitter = new EventEmitter();
    const waiting = onceWithin(emitter, 'drain', 60_000, { what: 'drain', failOn: ['close'] });
    emitter.emit('drain');
    emitter.emit('drain');
    await waiting;
    assert.equal(leftOver(emitter), 0);
  });

  test("rejects on 'error' and on a failOn event, leaving no listener", async () => {
    const erring = new EventEmitter();
    const failed = onceWithin(erring, 'drain', 60_000, { what: 'drain', failOn: ['close'] });
    erring.emit('error', new Error('boom'));
    await assert.rejects(failed, /boom/);
    assert.equal(leftOver(erring), 0);
    const closing = new EventEmitter();
    const interrupted = onceWithin(closing, 'drain', 60_000, { what: 'drain', failOn: ['close'] });
    closing.emit('close');
    await assert.rejects(interrupted, /drain interrupted/);
    assert.equal(leftOver(closing), 0);
  });

  test('rejects with a DeadlineError at the deadline, leaving no listener', async () => {
    const emitter = new EventEmitter();
    await assert.rejects(onceWithin(emitter, 'drain', 1, { what: 'drain', failOn: ['close'] }), DeadlineError);
    assert.equal(leftOver(emitter), 0);
  });
});
