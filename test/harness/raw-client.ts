/**
 * A byte-level test client: write exactly these bytes, read exactly what came back. For the
 * security cases where a friendly client library would hide the interesting part.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { readFileSync } from 'node:fs';
import { ByteInbox } from './inbox.js';

export class RawClient {
  #socket: Socket | TLSSocket;
  /** Everything received, across an upgrade (tests read 50 MB replies). */
  readonly #inbox = new ByteInbox();
  #closed = false;
  readonly whenClosed: Promise<void>;
  #resolveClosed!: () => void;

  private constructor(socket: Socket | TLSSocket) {
    this.#socket = socket;
    this.whenClosed = new Promise((resolve) => (this.#resolveClosed = resolve));
    this.#listen(socket);
  }

  /** Connects in clear. */
  static async plain(host: string, port: number, localAddress?: string): Promise<RawClient> {
    const socket = netConnect({ host, port, ...(localAddress ? { localAddress } : {}) });
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    return new RawClient(socket);
  }

  /** Connects with implicit TLS, trusting `caFile`. */
  static async tls(host: string, port: number, caFile: string, localAddress?: string): Promise<RawClient> {
    const socket = tlsConnect({ host, port, ca: readFileSync(caFile), servername: 'localhost', ...(localAddress ? { localAddress } : {}) });
    await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
    return new RawClient(socket);
  }

  get socket(): Socket | TLSSocket {
    return this.#socket;
  }

  get closed(): boolean {
    return this.#closed;
  }

  write(bytes: string | Buffer): void {
    this.#socket.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
  }

  /** Everything received on this connection (all layers after an upgrade), unconsumed or not. */
  all(): Buffer {
    return this.#inbox.all();
  }

  /** Everything not yet consumed by readLine/readUntil. */
  unread(): Buffer {
    return this.#inbox.unread();
  }

  /** Next line without CRLF; rejects on timeout or close. */
  async readLine(timeoutMs = 5_000): Promise<string> {
    const bytes = await this.readUntil('\r\n', timeoutMs);
    return bytes.subarray(0, bytes.length - 2).toString('latin1');
  }

  /** Reads up to and including the first occurrence of `marker` after what was consumed. */
  async readUntil(marker: string, timeoutMs = 5_000): Promise<Buffer> {
    const bytes = await this.#inbox.readUntil(marker, timeoutMs);
    if (bytes === null) throw new Error(`closed before ${JSON.stringify(marker)}; unread: ${JSON.stringify(this.unread().toString('latin1').slice(0, 200))}`);
    return bytes;
  }

  /** Sends one command and returns the first reply line. */
  async command(text: string, timeoutMs = 5_000): Promise<string> {
    this.write(`${text}\r\n`);
    return this.readLine(timeoutMs);
  }

  /** Sends a command with a multi-line reply; returns status and the raw (still dot-stuffed) body with terminator. */
  async multi(text: string, timeoutMs = 10_000): Promise<{ status: string; body: Buffer }> {
    const status = await this.command(text, timeoutMs);
    if (!status.startsWith('+OK')) return { status, body: Buffer.alloc(0) };
    const body = await this.readUntilTerminator(timeoutMs);
    return { status, body };
  }

  /** Reads a multi-line body up to and including CRLF.CRLF (the body starts at a line start). */
  async readUntilTerminator(timeoutMs = 10_000): Promise<Buffer> {
    const body = await this.#inbox.readUntilTerminator(timeoutMs);
    if (body === null) throw new Error('closed inside a multi-line reply');
    return body;
  }

  /**
   * Resolves true if nothing more arrives within `ms`. The wait is the subject: callers prove
   * an absence (no reply to a discarded command), which no event can announce.
   */
  async silentFor(ms: number): Promise<boolean> {
    const before = this.all().length;
    await new Promise((resolve) => setTimeout(resolve, ms));
    return this.all().length === before;
  }

  /** Wraps the connection in TLS (after the server's +OK to STLS). */
  async upgrade(caFile: string): Promise<void> {
    const plain = this.#socket;
    plain.removeAllListeners('data');
    const secured = tlsConnect({ socket: plain, ca: readFileSync(caFile), servername: 'localhost' });
    await new Promise<void>((resolve, reject) => secured.once('secureConnect', resolve).once('error', reject));
    this.#socket = secured;
    this.#inbox.discard();
    this.#listen(secured);
  }

  /** Waits for the server to close, up to `timeoutMs`; true if it did. */
  async closedWithin(timeoutMs: number): Promise<boolean> {
    if (this.#closed) return true;
    let timer: NodeJS.Timeout | undefined;
    const result = await Promise.race([
      this.whenClosed.then(() => true),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs))),
    ]);
    clearTimeout(timer);
    return result;
  }

  end(): void {
    this.#socket.end();
  }

  destroy(): void {
    this.#socket.destroy();
  }

  #listen(socket: Socket): void {
    this.#inbox.attach(socket, { errors: 'end' });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.#closed = true;
      this.#resolveClosed();
    });
  }
}
