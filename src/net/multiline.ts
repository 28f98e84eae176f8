/**
 * Finds the end of a relayed multi-line reply (RFC 1939 §3: CRLF "." CRLF) in a stream of
 * chunks without looking at each byte in JavaScript and without buffering the body: only the
 * last four bytes of what was seen are carried to the next chunk, to catch a terminator that is
 * split across reads. Bytes are never modified: dot-stuffing is the client's business.
 *
 * Only CRLF counts as a line end here. A body with bare LF lines (`x\n.\n`) is data, not an end
 * (D-05); treating it as one would let a message forge the rest of the session.
 */
const TERMINATOR = Buffer.from('\r\n.\r\n', 'latin1');
const CARRY = TERMINATOR.length - 1;

export class TerminatorScanner {
  /** The status line's CRLF precedes the body, so a body may end at once with ".\r\n". */
  #carry: Buffer = Buffer.from('\r\n', 'latin1');

  /**
   * Scans the next chunk of the body. Returns the index in `chunk` just past the terminator,
   * or -1 when the reply goes on.
   */
  feed(chunk: Buffer): number {
    if (this.#carry.length > 0) {
      const seam = Buffer.concat([this.#carry, chunk.subarray(0, CARRY)]);
      const at = seam.indexOf(TERMINATOR);
      if (at !== -1) return at + TERMINATOR.length - this.#carry.length;
    }
    const at = chunk.indexOf(TERMINATOR);
    if (at !== -1) return at + TERMINATOR.length;
    this.#carry =
      chunk.length >= CARRY
        ? Buffer.from(chunk.subarray(chunk.length - CARRY))
        : Buffer.concat([this.#carry, chunk]).subarray(-CARRY);
    return -1;
  }
}
