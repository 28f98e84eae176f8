import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { TerminatorScanner } from '../../src/net/multiline.js';
import { splitAt } from '../harness/chunks.js';

function bytes(text: string): Buffer {
  return Buffer.from(text, 'latin1');
}

/**
 * Where the reply ends according to RFC 1939 §3, computed the slow, obvious way: the first
 * CRLF "." CRLF whose "." starts a line, the body itself starting a line (the status line's
 * CRLF precedes it). Returns the offset in `body` just past the terminator, or -1.
 */
function expectedEnd(body: Buffer): number {
  const at = Buffer.concat([bytes('\r\n'), body]).indexOf(bytes('\r\n.\r\n'));
  return at === -1 ? -1 : at + 5 - 2;
}

interface Scan {
  /** Index of the chunk in which the terminator was reported, or -1. */
  readonly chunk: number;
  /** Offset in the whole body just past the terminator, or -1. */
  readonly end: number;
  /** Offset of the reported end within its chunk, or -1. */
  readonly at: number;
}

/**
 * Feeds chunks until the scanner reports an end, like the relay does. Stopping at the first
 * report is what makes "found exactly once" testable: a premature report gives the wrong `end`.
 */
function scan(chunks: readonly Buffer[]): Scan {
  const scanner = new TerminatorScanner();
  let offset = 0;
  for (let i = 0; i < chunks.length; i++) {
    const chunk = chunks[i]!;
    const at = scanner.feed(chunk);
    if (at !== -1) {
      assert.ok(at >= 0 && at <= chunk.length, `index ${at} outside chunk of ${chunk.length}`);
      return { chunk: i, end: offset + at, at };
    }
    offset += chunk.length;
  }
  return { chunk: -1, end: -1, at: -1 };
}

function byteByByte(data: Buffer): Buffer[] {
  return [...data].map((b) => Buffer.of(b));
}

describe('TerminatorScanner: where the reply ends', () => {
  it('finds the terminator at the right index in one chunk', () => {
    const body = bytes('line one\r\nline two\r\n.\r\n');
    assert.equal(new TerminatorScanner().feed(body), body.length);
  });

  it('reports the index just past the terminator, so bytes after it (a pipelined reply) are not part of the body', () => {
    const data = bytes('1 120\r\n2 200\r\n.\r\n+OK 2 320\r\n');
    assert.equal(new TerminatorScanner().feed(data), data.indexOf(bytes('+OK 2')));
  });

  it('D-03: handles an empty body (".\\r\\n" right at the start)', () => {
    assert.equal(new TerminatorScanner().feed(bytes('.\r\n')), 3);
    assert.equal(new TerminatorScanner().feed(bytes('.\r\n+OK\r\n')), 3);
    assert.deepEqual(scan(byteByByte(bytes('.\r\n'))), { chunk: 2, end: 3, at: 1 });
  });

  it('D-03: finds the terminator split inside CRLF.CRLF at every point, at the same offset', () => {
    const body = bytes('hello\r\nworld\r\n.\r\n');
    for (let cut = 0; cut <= body.length; cut++) {
      const result = scan([body.subarray(0, cut), body.subarray(cut)]);
      assert.equal(result.end, body.length, `cut at ${cut}`);
    }
    // The splits named in D-03: "\r" | "\n." | "\r\n"
    assert.equal(scan([bytes('hello\r'), bytes('\n.'), bytes('\r\n')]).end, 10);
    assert.equal(scan([bytes('hello\r'), bytes('\n.'), bytes('\r\n')]).chunk, 2);
  });

  it('finds the terminator fed byte by byte, in the chunk holding its last byte', () => {
    const body = bytes('a\r\n..\r\nb\r\n.\r\n');
    assert.deepEqual(scan(byteByByte(body)), { chunk: body.length - 1, end: body.length, at: 1 });
  });

  it('finds a terminator that spans three chunks, with an empty chunk among them', () => {
    assert.equal(scan([bytes('x\r'), Buffer.alloc(0), bytes('\n'), bytes('.'), bytes('\r\n')]).end, 6);
  });
});

describe('TerminatorScanner: what is not a terminator', () => {
  it('D-03: dot-stuffed lines (.., ..foo, ...) are data, also as the first line', () => {
    for (const body of ['..\r\n', '..foo\r\n', '...\r\n', 'x\r\n..\r\n', 'x\r\n..foo\r\n', 'x\r\n...\r\n', '.x\r\n', '. \r\n']) {
      assert.equal(new TerminatorScanner().feed(bytes(body)), -1, JSON.stringify(body));
      assert.equal(scan(byteByByte(bytes(body))).end, -1, `${JSON.stringify(body)} byte by byte`);
    }
  });

  it('D-03: dot-stuffed lines followed by the real terminator end at the real terminator', () => {
    const body = bytes('..\r\n..foo\r\n...\r\n.\r\n');
    assert.equal(new TerminatorScanner().feed(body), body.length);
  });

  it('D-05: a bare-LF dot line is data; the reply ends only at the final CRLF.CRLF', () => {
    const body = bytes('x\n.\n+OK forged\r\nreal\r\n.\r\n');
    assert.equal(new TerminatorScanner().feed(body), body.length);
    assert.equal(scan(byteByByte(body)).end, body.length);
    for (const mixed of ['x\r\n.\n', 'x\n.\r\n', '.\n', '\n.\r\n', 'x\r.\r\n', 'x\r\n.\r']) {
      assert.equal(new TerminatorScanner().feed(bytes(mixed)), -1, JSON.stringify(mixed));
    }
  });

  it('D-04: NUL, bare CR, 0x80-0xFF and "\\r\\r\\n" in a body are data', () => {
    const hostile = bytes('\x00\x00\r\r\n\xff\xfe\x80.\r\r\n.\x00\r\n\r\r.\r\n');
    assert.equal(new TerminatorScanner().feed(hostile), -1);
    assert.equal(scan(byteByByte(hostile)).end, -1);
    const ended = Buffer.concat([hostile, bytes('.\r\n')]);
    // hostile ends with "\r\n", so the appended ".\r\n" completes the terminator.
    assert.equal(new TerminatorScanner().feed(ended), ended.length);
  });

  it('D-04: a 10 MiB chunk with no CRLF has no terminator and is scanned quickly', () => {
    const big = Buffer.alloc(10 * 1024 * 1024, 0x2e); // all dots: the worst near-miss for a naive scanner
    const scanner = new TerminatorScanner();
    const started = process.hrtime.bigint();
    assert.equal(scanner.feed(big), -1);
    assert.equal(scanner.feed(big), -1);
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    assert.ok(ms < 1000, `two 10 MiB chunks took ${ms.toFixed(0)} ms`);
    // The scanner still works after it: the terminator needs a CRLF before the dot.
    assert.equal(scanner.feed(bytes('\r\n.\r\n')), 5);
  });

  it('D-04: a 10 MiB body line then the terminator ends right after it', () => {
    const body = Buffer.concat([Buffer.alloc(10 * 1024 * 1024, 0x61), bytes('\r\n.\r\n')]);
    assert.equal(new TerminatorScanner().feed(body), body.length);
  });
});

describe('TerminatorScanner: properties (fast-check)', () => {
  // Bodies made mostly of the bytes that matter ('\r', '\n', '.') plus some others.
  const interesting = fc.constantFrom(0x0d, 0x0a, 0x2e, 0x2e, 0x0d, 0x0a, 0x41, 0x00, 0xff, 0x20);
  const body = fc.array(fc.oneof(interesting, fc.integer({ min: 0, max: 255 })), { maxLength: 120 }).map((a) => Buffer.from(a));
  const lines = fc
    .array(fc.constantFrom('..', '..foo', '...', '.', 'x', '', '.\n', 'x\n.', '\r', '+OK forged'), { maxLength: 10 })
    .map((ls) => bytes(ls.map((l) => `${l}\r\n`).join('')));

  it('reports the end exactly once, at the first CRLF.CRLF after a line start, for any split', () => {
    fc.assert(
      fc.property(fc.oneof(body, lines), fc.array(fc.nat(), { maxLength: 30 }), (data, points) => {
        const chunks = splitAt(data, points);
        const result = scan(chunks);
        assert.equal(result.end, expectedEnd(data));
        if (result.end !== -1) {
          // Concatenating the chunks up to the reported end gives the body up to the terminator.
          const delivered = Buffer.concat([...chunks.slice(0, result.chunk), chunks[result.chunk]!.subarray(0, result.at)]);
          assert.ok(delivered.equals(data.subarray(0, expectedEnd(data))));
        }
        assert.equal(scan(byteByByte(data)).end, expectedEnd(data));
      }),
      { numRuns: 2000 },
    );
  });

  it('finds the terminator appended to any body with no terminator in it, for any split', () => {
    fc.assert(
      fc.property(body, fc.array(fc.nat(), { maxLength: 30 }), (raw, points) => {
        fc.pre(expectedEnd(raw) === -1);
        const data = Buffer.concat([raw, bytes('\r\n.\r\n')]);
        const end = expectedEnd(data);
        assert.ok(end !== -1);
        assert.equal(scan(splitAt(data, points)).end, end);
      }),
      { numRuns: 1000 },
    );
  });
});
