/**
 * What the relay does with a multi-line reply (backend/link.ts streamBody, on the terminator
 * scanner): a backend stream in random pieces, a client that is now and then full. The client
 * gets the backend's bytes unchanged up to the first CRLF.CRLF and not one byte past it; a reply
 * with no terminator, or bytes after it, fails the link with a typed error, and a reply the
 * client got without its terminator is never reported complete.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BackendLink, type BodySink } from '../../../src/backend/link.js';
import { BackendUnavailableError } from '../../../src/errors.js';
import { memorySocketPair } from '../../harness/memory-socket.js';
import { byteStream, chunked } from '../inputs.js';
import { defineTarget } from '../target.js';
import { referenceEnd } from './terminator.js';

const body = byteStream(['\r\n', '.\r\n', '\r\n.\r\n', '..\r\n', '\n.\n', '\r', 'From: a\r\n', 'x'], 6, 24);

export default defineTarget({
  name: 'relay-body',
  about: 'multi-line replies through BackendLink.streamBody: exact bytes up to CRLF.CRLF, in any pieces',
  input: fc.record({
    data: chunked(fc.tuple(fc.constantFrom('+OK 1 octets\r\n', '+OK\n'), body).map(([status, rest]) => Buffer.concat([Buffer.from(status), rest]))),
    full: fc.array(fc.boolean(), { maxLength: 8 }),
  }),
  ciRuns: 500,
  async check({ data, full }) {
    const { client: backend, server } = memorySocketPair();
    let idleFailure: BackendUnavailableError | undefined;
    const link = new BackendLink(server.asSocket(), (error) => (idleFailure = error));
    const received: Buffer[] = [];
    let writes = 0;
    const sink: BodySink = {
      write: (chunk) => {
        received.push(Buffer.from(chunk));
        return !(full[writes++ % Math.max(1, full.length)] ?? false);
      },
      drained: () => new Promise((resolve) => setImmediate(resolve)),
    };
    for (const piece of data.chunks) backend.write(piece);
    backend.end();

    let outcome: 'complete' | BackendUnavailableError;
    let status: Buffer | undefined;
    try {
      status = await link.readRawLine('relay', 2_000);
      await link.streamBody(sink, 2_000);
      outcome = 'complete';
      // What the backend sends after the reply reaches a link with no command out: wait for it
      // (the backend's FIN comes last, so the link always fails once everything has arrived).
      await until(() => idleFailure !== undefined);
    } catch (error) {
      if (!(error instanceof BackendUnavailableError)) throw error;
      outcome = error;
    } finally {
      link.destroy();
      backend.destroy();
    }

    const statusLength = data.stream.indexOf(0x0a) + 1;
    if (status === undefined) {
      assert.ok(statusLength === 0, 'the status line was there but not read');
      return;
    }
    assert.deepEqual(status, data.stream.subarray(0, statusLength));
    const sent = Buffer.concat(received);
    const bodyBytes = data.stream.subarray(statusLength);
    const end = referenceEnd(bodyBytes);
    if (end === -1) {
      assert.notEqual(outcome, 'complete', 'a reply without its terminator was reported complete');
      assert.deepEqual(sent, bodyBytes.subarray(0, sent.length), 'the client got bytes the backend did not send');
      return;
    }
    assert.deepEqual(sent, bodyBytes.subarray(0, end), 'the client did not get exactly the reply');
    // Bytes after the reply are a protocol violation, at once or as soon as they arrive unasked;
    // without them the link only sees the backend close.
    const failure = outcome === 'complete' ? idleFailure : outcome;
    assert.equal(failure?.code, end < bodyBytes.length ? 'E_BACKEND_PROTOCOL' : 'E_BACKEND_CLOSED');
  },
});

/** Resolves once `condition` holds, checked after each turn of the event loop. */
async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setImmediate(resolve));
}
