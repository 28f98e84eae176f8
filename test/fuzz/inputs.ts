/**
 * Input generators shared by the fuzz targets: byte streams made of the pieces that matter to a
 * line-oriented parser (CR, LF, ".", runs long enough to reach a bound) mixed with random bytes,
 * and cuts that deliver one stream in the chunks a socket might.
 */
import fc from 'fast-check';
import { splitAt } from '../harness/chunks.js';

const latin1 = (text: string): Buffer => Buffer.from(text, 'latin1');

/** Random bytes, every value 0..255 possible. */
export const randomBytes = (maxLength: number): fc.Arbitrary<Buffer> =>
  fc.uint8Array({ maxLength }).map((bytes) => Buffer.from(bytes));

/**
 * A stream built from `pieces` (strings taken as latin1) and random bytes, with runs of one
 * byte of lengths around `bound` so both sides of every length limit are hit often.
 */
export function byteStream(pieces: readonly string[], bound: number, maxPieces = 40): fc.Arbitrary<Buffer> {
  const piece = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...pieces).map(latin1) },
    { weight: 2, arbitrary: randomBytes(8) },
    { weight: 1, arbitrary: fc.record({ byte: fc.constantFrom(0x41, 0x2e, 0x20, 0x0d), length: fc.integer({ min: Math.max(0, bound - 3), max: bound + 3 }) }).map(({ byte, length }) => Buffer.alloc(length, byte)) },
  );
  return fc.array(piece, { maxLength: maxPieces }).map((parts) => Buffer.concat(parts));
}

/** A stream and the chunks it arrives in (cut at random points; often one byte at a time). */
export function chunked(stream: fc.Arbitrary<Buffer>): fc.Arbitrary<{ stream: Buffer; chunks: Buffer[] }> {
  return fc
    .tuple(stream, fc.oneof(fc.array(fc.nat(), { maxLength: 30 }), fc.constant('bytewise' as const)))
    .map(([data, cuts]) => ({
      stream: data,
      chunks: cuts === 'bytewise' ? [...data].map((b) => Buffer.of(b)) : splitAt(data, cuts),
    }));
}
