/**
 * Preloaded (`node --import` this file) into a process a test starts with an IPC channel: on the
 * message `{ snapshot: FILE }` it writes a heap snapshot there (after a full GC, as V8 always
 * does for one) and answers `{ written: FILE }` once the file is whole. Plain JavaScript, so that
 * no loader sits in the measured heap. test/e2e/idle-session-memory.test.ts uses it.
 */
import { writeHeapSnapshot } from 'node:v8';

process.on('message', (message) => {
  if (typeof message?.snapshot === 'string') process.send({ written: writeHeapSnapshot(message.snapshot) });
});
// The channel alone must not keep the process alive, nor stop it from exiting as it would.
process.channel?.unref();
