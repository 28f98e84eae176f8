/**
 * A byte-level test client: write exactly these bytes, read exactly what came back. For the
 * security cases where a friendly client library would hide the interesting part.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { readFileSync } from 'node:fs';

export class RawClient {
  #socket: Socket | TLSSocket;
  /** Everything received, in one buffer that grows by doubling (tests read 50 MB replies). */
  #data: Buffer = Buffer.alloc(64 * 1024);
  #total = 0;
  #consumed = 0;
  #closed = false;
  #waiters: (() => void)[] = [];
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
    return this.#data.subarray(0, this.#total);
  }

  /** Everything not yet consumed by readLine/readUntil. */
  unread(): Buffer {
    return this.all().subarray(this.#consumed);
  }

  /** Next line without CRLF; rejects on timeout or close. */
  async readLine(timeoutMs = 5_000): Promise<string> {
    const bytes = await this.readUntil('\r\n', timeoutMs);
    return bytes.subarray(0, bytes.length - 2).toString('latin1');
  }

  /** Reads up to and including the first occurrence of `marker` after what was consumed. */
  async readUntil(marker: string, timeoutMs = 5_000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const all = this.all();
      const at = all.indexOf(marker, this.#consumed, 'latin1');
      if (at !== -1) {
        const out = Buffer.from(all.subarray(this.#consumed, at + marker.length));
        this.#consumed = at + marker.length;
        return out;
      }
      if (this.#closed) throw new Error(`closed before ${JSON.stringify(marker)}; unread: ${JSON.stringify(this.unread().toString('latin1').slice(0, 200))}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timeout waiting for ${JSON.stringify(marker)}; unread: ${JSON.stringify(this.unread().toString('latin1').slice(0, 200))}`);
      await this.#wait(left);
    }
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
    const deadline = Date.now() + timeoutMs;
    const start = this.#consumed;
    let searchFrom = start;
    for (;;) {
      const all = this.all();
      if (all.subarray(start, start + 3).toString('latin1') === '.\r\n') {
        this.#consumed = start + 3;
        return Buffer.from(all.subarray(start, start + 3));
      }
      const at = all.indexOf('\r\n.\r\n', searchFrom, 'latin1');
      searchFrom = Math.max(start, all.length - 4);
      if (at !== -1) {
        this.#consumed = at + 5;
        return Buffer.from(all.subarray(start, at + 5));
      }
      if (this.#closed) throw new Error('closed inside a multi-line reply');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timeout inside a multi-line reply');
      await this.#wait(left);
    }
  }

  /** Resolves true if nothing more arrives within `ms`. */
  async silentFor(ms: number): Promise<boolean> {
    const before = this.#total;
    await new Promise((resolve) => setTimeout(resolve, ms));
    return this.#total === before;
  }

  /** Wraps the connection in TLS (after the server's +OK to STLS). */
  async upgrade(caFile: string): Promise<void> {
    const plain = this.#socket;
    plain.removeAllListeners('data');
    const secured = tlsConnect({ socket: plain, ca: readFileSync(caFile), servername: 'localhost' });
    await new Promise<void>((resolve, reject) => secured.once('secureConnect', resolve).once('error', reject));
    this.#socket = secured;
    this.#consumed = this.#total;
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
    socket.on('data', (chunk: Buffer) => {
      if (this.#total + chunk.length > this.#data.length) {
        const grown = Buffer.alloc(Math.max(this.#data.length * 2, this.#total + chunk.length));
        this.#data.copy(grown, 0, 0, this.#total);
        this.#data = grown;
      }
      chunk.copy(this.#data, this.#total);
      this.#total += chunk.length;
      this.#wake();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.#closed = true;
      this.#resolveClosed();
      this.#wake();
    });
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiters) waiter();
  }

  #wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
