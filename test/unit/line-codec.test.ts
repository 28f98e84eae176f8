import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LineFramer, type FramedLine } from '../../src/net/line-codec.js';
import { MAX_COMMAND_LINE_OCTETS } from '../../src/config/limits.js';
import { splitAt } from '../harness/chunks.js';

/** What the framer said, in a form assert.deepEqual compares well: line text (latin1) or TOO-LONG. */
type Seen = string | { tooLong: true };

function show(framed: readonly FramedLine[]): Seen[] {
  return framed.map((f) => (f.kind === 'line' ? f.line.toString('latin1') : { tooLong: true as const }));
}

function feed(max: number, chunks: readonly Buffer[]): Seen[] {
  const framer = new LineFramer(max);
  const out: Seen[] = [];
  for (const chunk of chunks) out.push(...show(framer.push(chunk)));
  return out;
}

function bytes(text: string): Buffer {
  return Buffer.from(text, 'latin1');
}

function byteByByte(data: Buffer): Buffer[] {
  return [...data].map((b) => Buffer.of(b));
}

const TOO_LONG = { tooLong: true } as const;

describe('LineFramer: line endings', () => {
  it('accepts CRLF and bare LF, and strips only the CR before LF', () => {
    assert.deepEqual(feed(255, [bytes('CAPA\r\nNOOP\nQUIT\r\n')]), ['CAPA', 'NOOP', 'QUIT']);
  });

  it('keeps an empty line as an empty line', () => {
    assert.deepEqual(feed(255, [bytes('\r\n\n')]), ['', '']);
  });

  it('returns nothing for a line without its LF yet, then the whole line when it arrives', () => {
    const framer = new LineFramer(255);
    assert.deepEqual(show(framer.push(bytes('US'))), []);
    assert.deepEqual(show(framer.push(bytes('ER bob\r'))), []);
    assert.deepEqual(show(framer.push(bytes('\n'))), ['USER bob']);
  });

  it('gives the same lines when a session is fed byte by byte', () => {
    const data = bytes('USER bob\r\nPASS my secret pw\r\nLIST\nRETR 1\r\n\r\nQUIT\r\n');
    assert.deepEqual(feed(255, byteByByte(data)), feed(255, [data]));
    assert.deepEqual(feed(255, [data]), ['USER bob', 'PASS my secret pw', 'LIST', 'RETR 1', '', 'QUIT']);
  });

  it('gives the same lines for every single split point of a session', () => {
    const data = bytes('USER bob\r\nPASS x\r\nSTAT\n');
    for (let cut = 0; cut <= data.length; cut++) {
      assert.deepEqual(feed(255, [data.subarray(0, cut), data.subarray(cut)]), ['USER bob', 'PASS x', 'STAT'], `cut ${cut}`);
    }
  });

  it('passes other bytes (NUL, 0x80-0xFF, a CR not before LF) through for the parser to judge', () => {
    assert.deepEqual(feed(255, [bytes('a\x00b\xff\rc\r\r\n')]), ['a\x00b\xff\rc\r']);
  });
});

describe('LineFramer: the length bound (RFC 2449 §4, R-03)', () => {
  const max = MAX_COMMAND_LINE_OCTETS;

  it('uses 255 octets, CRLF included, as the command bound', () => {
    assert.equal(MAX_COMMAND_LINE_OCTETS, 255);
  });

  it('accepts a line of exactly 255 octets including CRLF, whole or byte by byte', () => {
    const user = `USER ${'a'.repeat(248)}`;
    const data = bytes(`${user}\r\n`);
    assert.equal(data.length, 255);
    assert.deepEqual(feed(max, [data]), [user]);
    assert.deepEqual(feed(max, byteByByte(data)), [user]);
  });

  it('accepts a line of exactly 255 octets ended by a bare LF', () => {
    const text = 'x'.repeat(254);
    assert.deepEqual(feed(max, [bytes(`${text}\n`)]), [text]);
    assert.deepEqual(feed(max, byteByByte(bytes(`${text}\n`))), [text]);
  });

  it('reports one octet more as exactly one too-long, whole or byte by byte', () => {
    const data = bytes(`USER ${'a'.repeat(249)}\r\n`);
    assert.equal(data.length, 256);
    assert.deepEqual(feed(max, [data]), [TOO_LONG]);
    assert.deepEqual(feed(max, byteByByte(data)), [TOO_LONG]);
  });

  it('R-03: never emits the tail of an over-long line as a command', () => {
    const data = bytes(`USER ${'a'.repeat(4000)}NOOP\r\n`);
    for (const chunks of [[data], byteByByte(data), splitAt(data, [3, 254, 255, 256, 4000, 4005, 4008])]) {
      const seen = feed(max, chunks);
      assert.ok(!seen.some((s) => typeof s === 'string' && s.includes('NOOP')));
      assert.deepEqual(seen, [TOO_LONG]);
    }
  });

  it('R-03: a tail arriving in a later read, after the too-long report, is still dropped', () => {
    const framer = new LineFramer(max);
    assert.deepEqual(show(framer.push(bytes(`USER ${'a'.repeat(300)}`))), [TOO_LONG]);
    assert.deepEqual(show(framer.push(bytes('a'.repeat(5000)))), []);
    assert.deepEqual(show(framer.push(bytes('NOOP\r\nSTAT\r\n'))), ['STAT']);
  });

  it('frames the lines after an over-long one as usual', () => {
    const data = bytes(`CAPA\r\n${'b'.repeat(1000)}\r\nSTAT\r\nQUIT\r\n`);
    assert.deepEqual(feed(max, [data]), ['CAPA', TOO_LONG, 'STAT', 'QUIT']);
    assert.deepEqual(feed(max, byteByByte(data)), ['CAPA', TOO_LONG, 'STAT', 'QUIT']);
  });

  it('reports two over-long lines in a row as two too-longs', () => {
    const data = bytes(`${'b'.repeat(300)}\r\n${'c'.repeat(300)}\r\nNOOP\r\n`);
    assert.deepEqual(feed(max, [data]), [TOO_LONG, TOO_LONG, 'NOOP']);
    assert.deepEqual(feed(max, byteByByte(data)), [TOO_LONG, TOO_LONG, 'NOOP']);
  });
});

describe('LineFramer: reset (STLS, S-03)', () => {
  it('drops a partial line, so plaintext residue cannot prefix the first line inside TLS', () => {
    const framer = new LineFramer(255);
    assert.deepEqual(show(framer.push(bytes('STLS\r\nUSER atta'))), ['STLS']);
    framer.reset();
    assert.deepEqual(show(framer.push(bytes('CAPA\r\n'))), ['CAPA']);
  });

  it('ends the discarding of an over-long tail, so the first line inside TLS is not swallowed', () => {
    const framer = new LineFramer(255);
    assert.deepEqual(show(framer.push(bytes('z'.repeat(400)))), [TOO_LONG]);
    framer.reset();
    assert.deepEqual(show(framer.push(bytes('CAPA\r\n'))), ['CAPA']);
  });
});

describe('LineFramer: properties (fast-check)', () => {
  // Content without CR or LF, so the oracle below is just "length + ending > max".
  const framedLine = fc.record({
    content: fc.uint8Array({ minLength: 0, maxLength: 50 }).map((a) => Buffer.from(a.map((b) => (b === 0x0a || b === 0x0d ? 0x41 : b)))),
    crlf: fc.boolean(),
  });

  it('frames random line sets split at random points exactly as the line-by-line oracle says', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 40 }), fc.array(framedLine, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 20 }), (max, lines, points) => {
        const data = Buffer.concat(lines.map(({ content, crlf }) => Buffer.concat([content, bytes(crlf ? '\r\n' : '\n')])));
        const expected: Seen[] = lines.map(({ content, crlf }) =>
          content.length + (crlf ? 2 : 1) > max ? TOO_LONG : content.toString('latin1'),
        );
        assert.deepEqual(feed(max, splitAt(data, points)), expected);
        assert.deepEqual(feed(max, byteByByte(data)), expected);
      }),
      { numRuns: 500 },
    );
  });

  it('gives the same result for any bytes (CR and LF included) whatever the split', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 40 }),
        fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a.map((b) => (b % 5 === 0 ? 0x0a : b % 7 === 0 ? 0x0d : b)))),
        fc.array(fc.nat(), { maxLength: 20 }),
        (max, data, points) => {
          const whole = feed(max, [data]);
          assert.deepEqual(feed(max, splitAt(data, points)), whole);
          assert.deepEqual(feed(max, byteByByte(data)), whole);
          for (const seen of whole) {
            if (typeof seen === 'string') assert.ok(seen.length + 1 <= max, `line of ${seen.length} octets framed with max ${max}`);
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});
