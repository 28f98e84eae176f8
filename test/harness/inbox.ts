/**
 * The one reader of incoming bytes in the harness: everything a stream delivered, kept in order,
 * read as lines or up to a marker, waiting on the stream's own events (never polling). Raw
 * clients, real-client helpers, the fake backend and the session scripts all read through it.
 */
import type { Readable } from 'node:stream';
import { Changes } from './changes.js';

/**
 * What `take` looks for: the end (exclusive) of the next piece in `data` from `from`, or -1.
 * `scanned` is where the data stood at the last look: bytes before it were searched already, so
 * a finder starts there (less its marker's length), and a 50 MB reply costs one pass, not one per chunk.
 */
type Finder = (data: Buffer, from: number, scanned: number) => number;

export class ByteInbox {
  /** Everything received, in one buffer that grows by doubling (tests read 50 MB replies). */
  #data: Buffer = Buffer.alloc(64 * 1024);
  #total = 0;
  #consumed = 0;
  #ended = false;
  #error: Error | undefined;
  readonly #changes = new Changes();

  constructor(stream?: Readable) {
    if (stream !== undefined) this.attach(stream);
  }

  /**
   * Reads `stream` into this inbox too (after an upgrade, the TLS layer joins the same history).
   * A stream error fails the next read, or with `errors: 'end'` only ends the stream (for raw
   * probes, where a reset is one more way for the server to hang up).
   */
  attach(stream: Readable, options: { readonly errors?: 'throw' | 'end' } = {}): void {
    stream.on('data', (chunk: Buffer) => this.#append(chunk));
    stream.on('end', () => this.#finish());
    stream.on('close', () => this.#finish());
    stream.on('error', (error: Error) => {
      if (options.errors !== 'end') this.#error ??= error;
      this.#changes.notify();
    });
  }

  /** Everything received so far, consumed or not. */
  all(): Buffer {
    return this.#data.subarray(0, this.#total);
  }

  /** Everything not yet consumed by a read. */
  unread(): Buffer {
    return this.all().subarray(this.#consumed);
  }

  /** True once the stream has ended or closed. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Forgets what was received but not read (before a TLS handshake, or at an upgrade). */
  discard(): void {
    this.#consumed = this.#total;
  }

  /** The next LF-terminated line without its CRLF (or bare LF); null when the stream ended first. */
  async readLine(timeoutMs: number): Promise<Buffer | null> {
    const piece = await this.#take((data, from, scanned) => {
      const at = data.indexOf(0x0a, Math.max(from, scanned));
      return at === -1 ? -1 : at + 1;
    }, timeoutMs, 'a line');
    if (piece === null) return null;
    const end = piece.length >= 2 && piece[piece.length - 2] === 0x0d ? piece.length - 2 : piece.length - 1;
    return piece.subarray(0, end);
  }

  /** Up to and including the first `marker` after what was read; null when the stream ended first. */
  readUntil(marker: string, timeoutMs: number): Promise<Buffer | null> {
    return this.#take((data, from, scanned) => {
      const at = data.indexOf(marker, Math.max(from, scanned - marker.length + 1), 'latin1');
      return at === -1 ? -1 : at + marker.length;
    }, timeoutMs, JSON.stringify(marker));
  }

  /**
   * A multi-line body up to and including its CRLF.CRLF terminator, still dot-stuffed (the body
   * starts at a line start, so a lone ".\r\n" is an empty body); null when the stream ended first.
   */
  readUntilTerminator(timeoutMs: number): Promise<Buffer | null> {
    return this.#take((data, from, scanned) => {
      if (data.subarray(from, from + 3).toString('latin1') === '.\r\n') return from + 3;
      const at = data.indexOf('\r\n.\r\n', Math.max(from, scanned - 4), 'latin1');
      return at === -1 ? -1 : at + 5;
    }, timeoutMs, 'the end of a multi-line reply');
  }

  /** Resolves once the stream has ended or closed; rejects after `timeoutMs`. */
  async whenEnded(timeoutMs: number): Promise<void> {
    await this.#changes.until(() => (this.#ended ? true : undefined), timeoutMs, () => `the stream did not end within ${timeoutMs} ms`);
  }

  async #take(find: Finder, timeoutMs: number, what: string): Promise<Buffer | null> {
    let scanned = this.#consumed;
    const taken = await this.#changes.until<Buffer | 'ended'>(
      () => {
        const end = find(this.all(), this.#consumed, scanned);
        scanned = this.#total;
        if (end !== -1) {
          const piece = Buffer.from(this.#data.subarray(this.#consumed, end));
          this.#consumed = end;
          return piece;
        }
        if (this.#error !== undefined) throw this.#error;
        return this.#ended ? 'ended' : undefined;
      },
      timeoutMs,
      () => `no ${what} within ${timeoutMs} ms; unread: ${JSON.stringify(this.unread().toString('latin1').slice(0, 200))}`,
    );
    return taken === 'ended' ? null : taken;
  }

  #append(chunk: Buffer): void {
    if (this.#total + chunk.length > this.#data.length) {
      const grown = Buffer.alloc(Math.max(this.#data.length * 2, this.#total + chunk.length));
      this.#data.copy(grown, 0, 0, this.#total);
      this.#data = grown;
    }
    chunk.copy(this.#data, this.#total);
    this.#total += chunk.length;
    this.#changes.notify();
  }

  #finish(): void {
    this.#ended = true;
    this.#changes.notify();
  }
}
