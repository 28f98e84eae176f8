/**
 * The multi-line terminator scanner the relay runs on every body (net/multiline.ts): in any
 * chunking it ends the reply exactly where the first CRLF "." CRLF of the stream lies (the status
 * line's CRLF counting as the first CRLF), never on a bare LF, a stuffed "..", or a lone CR.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { TerminatorScanner } from '../../../src/net/multiline.js';
import { byteStream, chunked } from '../inputs.js';
import { defineTarget } from '../target.js';

/** Where the reply ends in `body` (just past its terminator), or -1: a plain search of the whole. */
export function referenceEnd(body: Buffer): number {
  const at = Buffer.concat([Buffer.from('\r\n'), body]).indexOf('\r\n.\r\n', 0, 'latin1');
  return at === -1 ? -1 : at + 5 - 2;
}

export default defineTarget({
  name: 'terminator',
  about: 'multi-line reply end (CRLF.CRLF) across random chunk boundaries vs a plain search',
  input: chunked(byteStream(['\r\n', '\r', '\n', '.', '..', '\r\n.\r\n', '\r\n..\r\n', '.\r\n', '\n.\n', 'line'], 6, 30)),
  check({ stream, chunks }) {
    const scanner = new TerminatorScanner();
    let offset = 0;
    let end = -1;
    for (const chunk of chunks) {
      const at = scanner.feed(chunk);
      if (at !== -1) {
        assert.ok(at > 0 && at <= chunk.length, `feed returned ${at} for a chunk of ${chunk.length}`);
        end = offset + at;
        break;
      }
      offset += chunk.length;
    }
    assert.equal(end, referenceEnd(stream));
  },
});
