/**
 * The load generator's POP3 client: one command at a time, replies counted rather than kept, so
 * a 50 MiB RETR costs the generator no memory and little CPU. Multi-line replies end at the
 * first CRLF "." CRLF, found by the relay's own scanner.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { TerminatorScanner } from '../src/net/multiline.js';

/** Longest status line accepted; anything longer is a broken peer, not a reply. */
const MAX_STATUS = 4096;

export interface Reply {
  readonly status: string;
  /** Bytes of the multi-line body with its terminator (0 for a single-line reply). */
  readonly bodyBytes: number;
}

interface Waiter {
  readonly multiline: boolean;
  status: string | undefined;
  scanner: TerminatorScanner | undefined;
  bodyBytes: number;
  resolve(reply: Reply): void;
  reject(error: Error): void;
}

export interface Endpoint {
  readonly port: number;
  readonly tls: boolean;
  /** The certificate to trust, for TLS endpoints. */
  readonly ca?: Buffer;
  /** With `tls` false: STLS after the greeting, then TLS on the same connection. */
  readonly starttls?: boolean;
  /** The loopback address to connect from (the limiter and the per-address bounds see it). */
  readonly localAddress?: string;
}

export class PopClient {
  readonly #socket: Socket;
  readonly #listeners: { data(chunk: Buffer): void; error(error: Error): void; close(): void };
  #head: Buffer = Buffer.alloc(0);
  #waiter: Waiter | undefined;
  #failure: Error | undefined;

  private constructor(socket: Socket) {
    this.#socket = socket;
    this.#listeners = {
      data: (chunk) => this.#onData(chunk),
      error: (error) => this.#fail(error),
      close: () => this.#fail(new Error('connection closed')),
    };
    for (const [event, listener] of Object.entries(this.#listeners)) socket.on(event, listener);
  }

  /** Lets go of the socket (STLS hands it to TLS): its events are no longer this client's. */
  #detach(): void {
    for (const [event, listener] of Object.entries(this.#listeners)) this.#socket.off(event, listener);
    this.#socket.setTimeout(0);
  }

  /**
   * Connects (a full TLS 1.3 handshake for TLS endpoints: no session is ever resumed) and reads the
   * greeting; with `starttls`, also STLS and the handshake. `timeoutMs` is the longest silence
   * the client tolerates while it waits for a reply (and while it sits idle between commands).
   */
  static async open(endpoint: Endpoint, timeoutMs = 30_000): Promise<PopClient> {
    const tls = { ca: endpoint.ca, servername: 'localhost', minVersion: 'TLSv1.3' } as const;
    const tcp = { host: '127.0.0.1', port: endpoint.port, ...(endpoint.localAddress === undefined ? {} : { localAddress: endpoint.localAddress }) };
    const socket = endpoint.tls ? tlsConnect({ ...tcp, ...tls }) : netConnect(tcp);
    socket.setNoDelay(true);
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no progress for ${timeoutMs} ms`)));
    const client = new PopClient(socket);
    const greeting = await client.#expect(false);
    if (!greeting.status.startsWith('+OK')) throw new Error(`greeting: ${greeting.status}`);
    if (endpoint.tls || endpoint.starttls !== true) return client;
    await client.ok('STLS');
    client.#detach();
    const upgraded = tlsConnect({ socket, ...tls });
    upgraded.setTimeout(timeoutMs, () => upgraded.destroy(new Error(`no progress for ${timeoutMs} ms`)));
    const secure = new PopClient(upgraded);
    await new Promise<void>((resolve, reject) => {
      upgraded.once('secureConnect', resolve);
      upgraded.once('error', reject);
    });
    return secure;
  }

  /** Opens a session and logs in with USER/PASS. */
  static async login(endpoint: Endpoint, user: string, pass: string): Promise<PopClient> {
    const client = await PopClient.open(endpoint);
    await client.ok(`USER ${user}`);
    await client.ok(`PASS ${pass}`);
    return client;
  }

  /** Sends one command and resolves with its reply (multi-line when `multiline` and +OK). */
  command(line: string, multiline = false): Promise<Reply> {
    const reply = this.#expect(multiline);
    this.#socket.write(`${line}\r\n`);
    return reply;
  }

  /** A command that must succeed. */
  async ok(line: string, multiline = false): Promise<Reply> {
    const reply = await this.command(line, multiline);
    if (!reply.status.startsWith('+OK')) throw new Error(`${line.split(' ')[0]}: ${reply.status}`);
    return reply;
  }

  /** QUIT, then closes whatever the server does. */
  async quit(): Promise<void> {
    await this.ok('QUIT');
    this.close();
  }

  close(): void {
    this.#socket.destroy();
  }

  #expect(multiline: boolean): Promise<Reply> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    if (this.#waiter !== undefined) return Promise.reject(new Error('one command at a time'));
    return new Promise((resolve, reject) => {
      this.#waiter = { multiline, status: undefined, scanner: undefined, bodyBytes: 0, resolve, reject };
    });
  }

  #onData(chunk: Buffer): void {
    const waiter = this.#waiter;
    if (waiter === undefined) return this.#fail(new Error(`unexpected bytes: ${chunk.toString('latin1', 0, 60)}`));
    let body = chunk;
    if (waiter.status === undefined) {
      this.#head = this.#head.length === 0 ? chunk : Buffer.concat([this.#head, chunk]);
      const end = this.#head.indexOf('\r\n');
      if (end === -1) {
        if (this.#head.length > MAX_STATUS) this.#fail(new Error('status line too long'));
        return;
      }
      waiter.status = this.#head.toString('latin1', 0, end);
      body = this.#head.subarray(end + 2);
      this.#head = Buffer.alloc(0);
      if (!waiter.multiline || !waiter.status.startsWith('+OK')) {
        if (body.length > 0) return this.#fail(new Error(`bytes after a single-line reply: ${waiter.status}`));
        return this.#settle({ status: waiter.status, bodyBytes: 0 });
      }
      waiter.scanner = new TerminatorScanner();
      if (body.length === 0) return;
    }
    waiter.bodyBytes += body.length;
    const end = waiter.scanner!.feed(body);
    if (end === -1) return;
    if (end !== body.length) return this.#fail(new Error('bytes after the end of a multi-line reply'));
    this.#settle({ status: waiter.status, bodyBytes: waiter.bodyBytes });
  }

  #settle(reply: Reply): void {
    const waiter = this.#waiter!;
    this.#waiter = undefined;
    waiter.resolve(reply);
  }

  #fail(error: Error): void {
    this.#failure ??= error;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.reject(error);
    this.#socket.destroy();
  }
}
