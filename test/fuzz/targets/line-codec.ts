/**
 * The client line codec (net/line-codec.ts): any bytes in any chunking give exactly the lines a
 * plain reference splitter gives for the whole stream, every line within the bound.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LineFramer } from '../../../src/net/line-codec.js';
import { MAX_COMMAND_LINE_OCTETS, MAX_SASL_LINE_OCTETS } from '../../../src/config/limits.js';
import { byteStream, chunked } from '../inputs.js';
import { defineTarget } from '../target.js';

type Seen = string | 'TOO-LONG';

/** The reference: split the whole stream at LF; a line (with its LF) over `max` is refused. */
function referenceLines(stream: Buffer, max: number): Seen[] {
  const parts = stream.toString('latin1').split('\n');
  const tail = parts.pop()!;
  const seen: Seen[] = parts.map((p) => (p.length + 1 > max ? 'TOO-LONG' : p.endsWith('\r') ? p.slice(0, -1) : p));
  // A line still open at the end is refused as soon as it cannot fit, before its LF arrives.
  if (tail.length >= max) seen.push('TOO-LONG');
  return seen;
}

export default defineTarget({
  name: 'line-codec',
  about: 'client line framing: random chunkings vs a reference splitter, bounded line length',
  input: fc.record({
    max: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.constantFrom(MAX_COMMAND_LINE_OCTETS, MAX_SASL_LINE_OCTETS)),
    data: chunked(byteStream(['\r\n', '\n', '\r', 'USER alice', 'PASS x y', ' '], 40, 30)),
  }),
  check({ max, data }) {
    const framer = new LineFramer(max);
    const seen: Seen[] = [];
    for (const chunk of data.chunks) {
      for (const framed of framer.push(chunk)) {
        if (framed.kind === 'too-long') {
          seen.push('TOO-LONG');
          continue;
        }
        assert.ok(framed.line.length < max, 'a line longer than the bound was framed');
        seen.push(framed.line.toString('latin1'));
      }
    }
    assert.deepEqual(seen, referenceLines(data.stream, max));
  },
});
