/**
 * Issue 10: the relay's cost per command. A link waits for every reply under a timeout; making a
 * timer per wait (setTimeout, then clearTimeout when the line came) cost an allocation and two
 * timer-list updates per command. The link keeps one timer and pushes it back instead. Counted
 * with async_hooks, which sees every Timeout Node creates (no timing involved).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHook } from 'node:async_hooks';
import type { Socket } from 'node:net';
import { tcpPair } from '../harness/tcp-pair.js';
import { BackendLink, type BodySink } from '../../src/backend/link.js';

/** A link past its greeting, the backend's end of its socket, and how to close both. */
async function greetedLink(): Promise<{ link: BackendLink; backend: Socket; close: () => void }> {
  const { ours, peer: backend, close } = await tcpPair();
  const link = new BackendLink(ours, () => undefined);
  backend.write('+OK greeting\r\n');
  await link.readRawLine('relay', 60_000);
  link.replyComplete('relay');
  return { link, backend, close: () => (link.destroy(), close()) };
}

/** Runs `work` and counts the Timeout objects created meanwhile. */
async function timersCreatedBy(work: () => Promise<void>): Promise<number> {
  let created = 0;
  const hook = createHook({ init: (_id, type) => void (type === 'Timeout' && (created += 1)) });
  hook.enable();
  try {
    await work();
  } finally {
    hook.disable();
  }
  return created;
}

test('a link makes no timer per command: 50 waited-for replies cost at most one', async () => {
  const { link, backend, close } = await greetedLink();
  try {
    // The backend answers each NOOP once it arrived, so every readRawLine has to wait.
    backend.on('data', () => backend.write('+OK\r\n'));
    const created = await timersCreatedBy(async () => {
      for (let i = 0; i < 50; i++) {
        link.send('NOOP');
        assert.equal((await link.readRawLine('relay', 60_000)).toString('latin1'), '+OK\r\n');
        link.replyComplete('relay');
      }
    });
    assert.ok(created <= 1, `${created} timers for 50 replies`);
  } finally {
    close();
  }
});

test('a link makes no timer per streamed body either', async () => {
  const { link, backend, close } = await greetedLink();
  try {
    const received: Buffer[] = [];
    const sink: BodySink = { write: (chunk) => (received.push(Buffer.from(chunk)), true), drained: async () => undefined };
    // Status line, then the body in two pieces: the relay waits for each.
    backend.on('data', () => {
      backend.write('+OK\r\n');
      setImmediate(() => {
        backend.write('line one\r\n');
        setImmediate(() => backend.write('line two\r\n.\r\n'));
      });
    });
    const created = await timersCreatedBy(async () => {
      for (let i = 0; i < 20; i++) {
        link.send('RETR 1');
        const status = await link.readRawLine('relay', 60_000);
        await link.streamBody(sink, 60_000, status);
      }
    });
    assert.ok(created <= 1, `${created} timers for 20 streamed replies`);
    assert.equal(Buffer.concat(received).toString('latin1'), '+OK\r\nline one\r\nline two\r\n.\r\n'.repeat(20));
  } finally {
    close();
  }
});
