/**
 * Bytes in, lines out: the framing of client commands, with no POP3 knowledge.
 *
 * A line ends at LF; a CR before it is removed (RFC 1939 wants CRLF, but old clients and
 * hand-typed sessions send bare LF, and accepting it costs nothing). A line longer than the
 * bound is reported once as `too-long` and everything up to the next LF is dropped, so the tail
 * of an over-long line can never be read as a command of its own.
 */
export type FramedLine = { readonly kind: 'line'; readonly line: Buffer } | { readonly kind: 'too-long' };

const LF = 0x0a;
const CR = 0x0d;

export class LineFramer {
  readonly #maxOctets: number;
  #partial: Buffer[] = [];
  #partialLength = 0;
  #discardingUntilLf = false;

  /** @param maxOctets the longest acceptable line, counting its line ending. */
  constructor(maxOctets: number) {
    this.#maxOctets = maxOctets;
  }

  /** Frames one chunk. Returned lines may share memory with `chunk`. */
  push(chunk: Buffer): FramedLine[] {
    const framed: FramedLine[] = [];
    let start = 0;
    while (start < chunk.length) {
      const lf = chunk.indexOf(LF, start);
      if (lf === -1) {
        this.#keepPartial(chunk.subarray(start), framed);
        break;
      }
      const piece = chunk.subarray(start, lf);
      start = lf + 1;
      if (this.#discardingUntilLf) {
        this.#discardingUntilLf = false;
        continue;
      }
      if (this.#partialLength + piece.length + 1 > this.#maxOctets) {
        this.reset();
        framed.push({ kind: 'too-long' });
        continue;
      }
      let line = this.#partialLength === 0 ? piece : Buffer.concat([...this.#partial, piece]);
      this.#partial = [];
      this.#partialLength = 0;
      if (line.length > 0 && line[line.length - 1] === CR) line = line.subarray(0, line.length - 1);
      framed.push({ kind: 'line', line });
    }
    return framed;
  }

  /** Forgets any partial line. Used at STLS, where nothing sent in clear may survive (S-03). */
  reset(): void {
    this.#partial = [];
    this.#partialLength = 0;
    this.#discardingUntilLf = false;
  }

  #keepPartial(rest: Buffer, framed: FramedLine[]): void {
    if (this.#discardingUntilLf) return;
    // The LF still to come adds one octet, so a partial line at the bound is already too long.
    if (this.#partialLength + rest.length >= this.#maxOctets) {
      this.reset();
      this.#discardingUntilLf = true;
      framed.push({ kind: 'too-long' });
      return;
    }
    // Copy: the chunk may be large and we only need this tail of it.
    this.#partial.push(Buffer.from(rest));
    this.#partialLength += rest.length;
  }
}
