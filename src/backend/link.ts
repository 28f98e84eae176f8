import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import { BackendSentTooMuchError, BackendUnavailableError, ClientStalledError, type BackendStep } from '../errors.js';
import { MAX_RESPONSE_LINE_OCTETS } from '../config/limits.js';
import { TerminatorScanner } from '../net/multiline.js';
import { awaitBackendSocket } from './socket-wait.js';

const EMPTY = Buffer.alloc(0);
const CRLF = Buffer.from('\r\n', 'latin1');
const LF = 0x0a;
const CR = 0x0d;

/**
 * Bytes read ahead of the current reader before the backend socket is paused. Replies read
 * whole (status lines, CAPA) are tiny; bodies are streamed through a sink and never land here.
 */
const UNREAD_HIGH_WATER = 64 * 1024;

/** The link a backend socket belongs to, for the listeners all links share (BackendLink.#listeners). */
const LINK = Symbol('popwarden.link');
type LinkSocket = (Socket | TLSSocket) & { [LINK]?: BackendLink | undefined };

/** Why a link closed by popwarden fails later reads: one instance, as it says nothing about the link. */
const CLOSED_BY_POPWARDEN = new BackendUnavailableError('E_BACKEND_CLOSED', 'relay', 'closed by popwarden');

/**
 * One read buffer for every plaintext backend socket (`backendReadOptions`). Node reads a socket
 * into a fresh 64 KiB buffer per read; relaying a 50 MiB message that way made ~800 buffers,
 * whose external memory pushed V8 into a full mark-compact about once per message. Reads are
 * delivered one at a time on the one JavaScript thread and each is consumed before the next, so
 * a single buffer serves them all: whatever must outlive the read is copied (see `#onData`).
 *
 * 256 KiB, not 64: a big RETR costs a fixed amount per read (the wake-up, the read, one TLS
 * write, the client's drain, pausing and resuming the backend). On the profile bench under load
 * that was a third of popwarden's CPU per GB relayed (issue 10.3a: 1.9 CPU-s/GB at 64 KiB, 1.0 at
 * 512 KiB, stunnel 1.0); on a quiet machine the full bench showed no difference (1.27 at 64 KiB,
 * 1.34 at 512). Not 512: a client that reads slowly holds one read, copied, and its encrypted
 * form until it drains or `timeouts.client_write_stall` ends it, about twice the read size a session
 * (docs/ISP-GATEWAY.md, Capacity), and a logged-in client that never reads should not hold a MiB. The buffer
 * is one per process, next to the kernel's own send buffer of up to net.ipv4.tcp_wmem's maximum
 * (4 MiB by default) for each socket.
 */
const BACKEND_READ_OCTETS = 256 * 1024;
const sharedReadBuffer = Buffer.allocUnsafe(BACKEND_READ_OCTETS);

/**
 * The `onread` option for a plaintext backend socket: reads land in the shared buffer and reach
 * the BackendLink as 'data' events whose chunk is a view valid only during the event.
 */
export const backendReadOptions = {
  buffer: sharedReadBuffer,
  callback(this: Socket, bytes: number, buffer: Uint8Array): boolean {
    this.emit('data', (buffer as Buffer).subarray(0, bytes));
    return true;
  },
} as const;

/**
 * Writes a chunk that is valid only during the call (a view of the shared read buffer) to the
 * client. A TLS socket with nothing queued encrypts the bytes before write() returns (OpenSSL
 * copies them into its records, or Node copies what it could not write yet), so the view goes
 * as it is; a busy or corked socket queues the chunk itself, and a plaintext socket may hand
 * it to the kernel later: those get a copy.
 */
export function writeBorrowed(socket: Socket | TLSSocket, chunk: Buffer): boolean {
  const passesThrough = 'encrypted' in socket && socket.encrypted && socket.writableLength === 0 && socket.writableCorked === 0;
  return socket.write(passesThrough ? chunk : Buffer.from(chunk));
}

/**
 * Where a streamed reply body goes: write returns false when the client is full (backpressure).
 * A chunk may be a view of a read buffer that the next read overwrites: a sink that keeps a
 * chunk after write returns (a socket that is busy or corked queues it) must keep a copy.
 */
export interface BodySink {
  write(chunk: Buffer): boolean;
  /** Resolves when the client has drained; rejects if it stalls for too long. */
  drained(): Promise<void>;
}

/**
 * One connection to the legacy POP3 server, read on demand. It enforces the backend's side of
 * the protocol: every line it reads is bounded, and bytes that arrive when no reply is expected
 * are a protocol violation (B-04) that ends the link, so a MitM or a broken server can never
 * shift replies between commands.
 */
export class BackendLink {
  #socket: Socket | TLSSocket;
  #unread: Buffer = EMPTY;
  #failure: BackendUnavailableError | undefined;
  #wake: (() => void) | undefined;
  #sink: ((chunk: Buffer) => void) | undefined;
  #expectingReply = true; // the greeting
  #secure = false;
  /**
   * The one timer bounding whatever the link waits for (a reply line, or the next chunk of a
   * body), pushed back with refresh() rather than made per command (issue 10: a setTimeout and a
   * clearTimeout per reply). `#onTimeout` is what its expiry means now; with none, it means
   * nothing. Unreferenced: a wait is always on the socket, which keeps the process alive.
   */
  #timer: NodeJS.Timeout | undefined;
  #timerMs = 0;
  #onTimeout: (() => void) | undefined;
  readonly #onIdleFailure: (error: BackendUnavailableError) => void;

  /**
   * @param socket a connected socket (a TLSSocket for a POP3S backend).
   * @param onIdleFailure called when the link breaks while no reply is outstanding (the
   *   backend closed, or sent something unasked), so the session can close the client too.
   */
  constructor(socket: Socket, onIdleFailure: (error: BackendUnavailableError) => void) {
    this.#socket = socket;
    // A socket from an implicit-TLS dial is secure from the first byte.
    this.#secure = 'encrypted' in socket && socket.encrypted === true;
    this.#onIdleFailure = onIdleFailure;
    this.#attach(socket);
  }

  /** True once the link runs over TLS (after STLS). */
  get secure(): boolean {
    return this.#secure;
  }

  /** The remote address of the backend socket, to tell a loopback backend from a remote one. */
  get remoteAddress(): string | undefined {
    return this.#socket.remoteAddress;
  }

  /** Writes one command line and starts expecting its reply. */
  send(commandLine: string | Buffer): void {
    const bytes = typeof commandLine === 'string' ? Buffer.from(commandLine, 'latin1') : commandLine;
    // The last line of defence against command injection: callers validate, this refuses.
    if (breaksLine(bytes)) {
      throw new Error('refusing to send a backend command line that contains CR, LF or NUL');
    }
    this.#expectingReply = true;
    // One write: the line and its CRLF in one segment (the socket has TCP_NODELAY).
    this.#socket.write(Buffer.concat([bytes, CRLF], bytes.length + CRLF.length));
  }

  /**
   * Reads the next line of a reply, with its line ending as the backend sent it (CRLF, or a
   * bare LF). Fails on a line over `maxOctets`, on silence for `timeoutMs`, and when the backend
   * closes. The line is a view of the bytes read, not a copy.
   *
   * One promise per line, however many reads it takes (issue 10: the relay waits for a reply
   * line on every command, and each promise and await is a microtask of V8's machinery).
   */
  readRawLine(step: BackendStep, timeoutMs: number, maxOctets = MAX_RESPONSE_LINE_OCTETS): Promise<Buffer> {
    try {
      const line = this.#takeLine(step, maxOctets);
      if (line !== undefined) return Promise.resolve(line);
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise<Buffer>((resolve, reject) => {
      // Called on each read and on failure. One clock for the whole line, from the first wait:
      // a read that brings only part of it does not push the clock back.
      const attempt = (): void => {
        try {
          const line = this.#takeLine(step, maxOctets);
          if (line === undefined) return;
          this.#stopWaiting();
          resolve(line);
        } catch (error) {
          this.#stopWaiting();
          reject(error);
        }
      };
      this.#wake = attempt;
      this.#armTimer(timeoutMs, () => {
        this.#wake = undefined;
        reject(new BackendUnavailableError('E_BACKEND_TIMEOUT', step, 'no reply in time'));
      });
    });
  }

  /**
   * The next whole line of what was read, or undefined (with the socket resumed) when it has not
   * come yet; throws when it never can: a line over `maxOctets`, or a failed link.
   */
  #takeLine(step: BackendStep, maxOctets: number): Buffer | undefined {
    const lf = this.#unread.indexOf(LF);
    if (lf !== -1) {
      if (lf + 1 > maxOctets) throw this.#protocolError(step, `line longer than ${maxOctets} octets`);
      const line = this.#unread.subarray(0, lf + 1);
      // Nothing left: drop the reference, so an idle link holds no buffer.
      this.#unread = lf + 1 === this.#unread.length ? EMPTY : this.#unread.subarray(lf + 1);
      if (this.#unread.length < UNREAD_HIGH_WATER) this.#socket.resume();
      return line;
    }
    if (this.#unread.length >= maxOctets) throw this.#protocolError(step, `line longer than ${maxOctets} octets`);
    if (this.#failure !== undefined) throw this.#failure.atStep(step);
    this.#socket.resume();
    return undefined;
  }

  #stopWaiting(): void {
    this.#wake = undefined;
    this.#onTimeout = undefined;
  }

  /** Like readRawLine, without the line ending. */
  async readLine(step: BackendStep, timeoutMs: number, maxOctets = MAX_RESPONSE_LINE_OCTETS): Promise<Buffer> {
    return withoutLineEnding(await this.readRawLine(step, timeoutMs, maxOctets));
  }

  /**
   * Reads the body of a short multi-line reply whole (CAPA), dot-unstuffed, up to the "." line.
   * More than `maxLines` lines is a protocol violation: only relayed bodies may be long, and
   * those are streamed instead.
   */
  async readShortList(step: BackendStep, timeoutMs: number, maxLines: number): Promise<string[]> {
    const lines: string[] = [];
    for (;;) {
      const text = (await this.readLine(step, timeoutMs)).toString('latin1');
      if (text === '.') return lines;
      if (lines.length >= maxLines) throw this.#protocolError(step, `more than ${maxLines} lines in a ${step} reply`);
      lines.push(text.startsWith('.') ? text.slice(1) : text);
    }
  }

  /**
   * Marks the outstanding reply as complete. Anything already read beyond it was not asked for:
   * two replies to one command, or extra greeting lines (B-04).
   */
  replyComplete(step: BackendStep): void {
    this.#expectingReply = false;
    if (this.#unread.length > 0) {
      throw this.#fail(new BackendSentTooMuchError(step, 'unsolicited data after a complete reply'));
    }
  }

  /**
   * Streams the body of a multi-line reply to `sink` as it arrives, unmodified, until the
   * terminating CRLF.CRLF has been passed on (it is part of what the client must receive).
   * `head` (the status line, for the client) goes out in the same write as the first body bytes
   * already read: a small reply leaves as one write, so as one TLS record and one segment.
   * Rejects if the backend closes, goes silent for `idleMs`, or sends bytes after the
   * terminator (BackendUnavailableError), or if the client stops reading (ClientStalledError);
   * the caller must then close the client WITHOUT completing the reply (D-01).
   *
   * Returns undefined, with nothing to wait for, when the whole reply had already been read with
   * its status line (the usual case for a small reply): it has gone to the sink. Then a failure
   * is thrown rather than rejected.
   */
  streamBody(sink: BodySink, idleMs: number, head: Buffer = EMPTY): Promise<void> | undefined {
    if (this.#failure !== undefined) throw this.#failure;
    const scanner = new TerminatorScanner();
    const alreadyRead = this.#unread;
    this.#unread = EMPTY;
    const end = alreadyRead.length === 0 ? -1 : scanner.feed(alreadyRead);
    if (end !== -1) {
      sink.write(joined(head, alreadyRead.subarray(0, end)));
      if (end < alreadyRead.length) throw this.#fail(new BackendSentTooMuchError('relay', 'data after the end of a multi-line reply'));
      this.#expectingReply = false;
      return undefined;
    }
    return new Promise<void>((resolve, reject) => {
      let done = false;
      // Set while the client is full: nothing may resume the backend (nor start a second idle
      // timer, which nothing would clear) before the client drains.
      let waitingForDrain = false;
      const finish = (error?: BackendUnavailableError | ClientStalledError): void => {
        if (done) return;
        done = true;
        this.#onTimeout = undefined;
        this.#sink = undefined;
        this.#wake = undefined;
        if (error === undefined) {
          this.#expectingReply = false;
          resolve();
        } else if (error instanceof ClientStalledError) {
          reject(error);
        } else {
          reject(this.#fail(error));
        }
      };
      const onIdle = (): void =>
        finish(new BackendUnavailableError('E_BACKEND_TIMEOUT', 'relay', `no data for ${idleMs} ms inside a reply`));
      const forward = (bytes: Buffer): void => {
        if (sink.write(bytes)) {
          // The link's one timer, pushed back on every chunk.
          this.#armTimer(idleMs, onIdle);
          return;
        }
        // The client is full: stop reading the backend until it drains. Our own pause is not
        // backend silence, so the idle timeout does not count meanwhile; the sink bounds the stall.
        this.#onTimeout = undefined;
        waitingForDrain = true;
        this.#socket.pause();
        sink.drained().then(
          () => {
            waitingForDrain = false;
            if (done) return;
            this.#armTimer(idleMs, onIdle);
            this.#socket.resume();
          },
          (error: unknown) => finish(new ClientStalledError({ cause: error })),
        );
      };
      const consume = (chunk: Buffer): void => {
        const at = scanner.feed(chunk);
        if (at === -1) return forward(chunk);
        sink.write(chunk.subarray(0, at));
        if (at < chunk.length) finish(new BackendSentTooMuchError('relay', 'data after the end of a multi-line reply'));
        else finish();
      };

      this.#sink = consume;
      this.#wake = () => {
        if (this.#failure !== undefined) finish(this.#failure);
      };
      if (head.length > 0 || alreadyRead.length > 0) forward(joined(head, alreadyRead));
      else this.#armTimer(idleMs, onIdle);
      if (!done && !waitingForDrain) this.#socket.resume();
    });
  }

  /**
   * Drops the link's timer while nothing is awaited (a logged-in link before its first command):
   * an idle session then holds no timer for it (issue 10.4). The next wait makes one again.
   */
  stopTimer(): void {
    if (this.#wake !== undefined || this.#sink !== undefined) return; // a reader relies on it
    this.#onTimeout = undefined;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /**
   * Upgrades the link with TLS after the backend said +OK to STLS. Whatever the backend sent
   * after that +OK is discarded unread (B-07: curl CVE-2021-22947), and the handshake must
   * verify the certificate as `options` say.
   */
  async startTls(options: ConnectionOptions, timeoutMs: number): Promise<void> {
    this.#unread = EMPTY;
    const plain = this.#socket;
    this.#detach(plain);
    const secured = tlsConnect({ ...options, socket: plain });
    this.#socket = secured;
    await awaitBackendSocket(secured, 'secureConnect', timeoutMs, { what: 'TLS handshake' }, 'tls-handshake', 'E_BACKEND_TLS');
    this.#secure = true;
    this.#expectingReply = false;
    this.#attach(secured);
  }

  /**
   * Closes the link at once, with no QUIT: the backend must not enter the UPDATE state and
   * delete messages unless the client itself said QUIT (RFC 1939 §6, D-07).
   */
  destroy(): void {
    // Every session ends here: a fresh Error (and its stack) only for a reader that is waiting.
    const error = this.#wake === undefined ? CLOSED_BY_POPWARDEN : new BackendUnavailableError('E_BACKEND_CLOSED', 'relay', 'closed by popwarden');
    this.#fail(error, false);
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#socket.destroy();
  }

  /**
   * The backend socket's listeners: one set of functions for every link, each finding its link
   * through the socket, rather than three closures kept by each idle session's link (issue
   * 10.4). `this` is the socket, as Node calls a listener.
   */
  static readonly #listeners = {
    data(this: LinkSocket, chunk: Buffer): void {
      const link = this[LINK];
      if (link !== undefined) link.#onData(chunk);
    },
    end(this: LinkSocket): void {
      const link = this[LINK];
      if (link !== undefined) link.#onEnd();
    },
    error(this: LinkSocket, error: Error): void {
      const link = this[LINK];
      if (link !== undefined) link.#onError(error);
    },
  };

  // The session's #attach/#detach for the client socket have the same shape with its own
  // handlers. Each pair stays written out beside the handlers it binds, so that the on and off
  // lists can be compared at a glance; a shared helper would save four lines and hide them.
  #attach(socket: LinkSocket): void {
    socket[LINK] = this;
    const listeners = BackendLink.#listeners;
    socket.on('data', listeners.data);
    socket.on('end', listeners.end);
    socket.on('error', listeners.error);
    socket.on('close', listeners.end);
  }

  #detach(socket: LinkSocket): void {
    const listeners = BackendLink.#listeners;
    socket.off('data', listeners.data);
    socket.off('end', listeners.end);
    socket.off('error', listeners.error);
    socket.off('close', listeners.end);
    socket[LINK] = undefined;
  }

  #onData(chunk: Buffer): void {
    if (this.#sink !== undefined) {
      this.#sink(chunk);
      return;
    }
    if (!this.#expectingReply) {
      this.#fail(new BackendSentTooMuchError('relay', 'unsolicited data while no command was outstanding'));
      this.#socket.destroy();
      return;
    }
    // The chunk may be the shared read buffer: what is kept is copied (replies read whole are small).
    this.#unread = this.#unread.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.#unread, chunk]);
    if (this.#unread.length >= UNREAD_HIGH_WATER) this.#socket.pause();
    this.#wake?.();
  }

  #onEnd(): void {
    // 'close' follows 'end' and every destroy(): no new Error once the link has failed.
    if (this.#failure !== undefined) return;
    this.#fail(new BackendUnavailableError('E_BACKEND_CLOSED', 'relay', 'the backend closed the connection'));
  }

  #onError(error: Error): void {
    if (this.#failure !== undefined) return;
    this.#fail(new BackendUnavailableError('E_BACKEND_CLOSED', 'relay', error.message, { cause: error }));
  }

  /** Records the first failure, wakes any reader, and tells the session if nobody was reading. */
  #fail(error: BackendUnavailableError, notify = true): BackendUnavailableError {
    if (this.#failure !== undefined) return this.#failure;
    this.#failure = error;
    const reader = this.#wake;
    if (reader !== undefined) reader();
    else if (notify && !this.#expectingReply) this.#onIdleFailure(error);
    return error;
  }

  #protocolError(step: BackendStep, message: string): BackendUnavailableError {
    return new BackendUnavailableError('E_BACKEND_PROTOCOL', step, message);
  }

  /** Starts the link's timer anew for `ms`, with `onTimeout` as what its expiry means. */
  #armTimer(ms: number, onTimeout: () => void): void {
    this.#onTimeout = onTimeout;
    if (this.#timer !== undefined && this.#timerMs === ms) {
      this.#timer.refresh();
      return;
    }
    // A different duration (login steps, probes): a timer of its own; the relay uses one.
    clearTimeout(this.#timer);
    this.#timerMs = ms;
    // Its closure is made with the timer, not kept by every link as a field.
    this.#timer = setTimeout(() => this.#expire(), ms).unref();
  }

  #expire(): void {
    const onTimeout = this.#onTimeout;
    this.#onTimeout = undefined;
    // Expired with nobody waiting: dropped, so an idle link holds no timer.
    if (onTimeout === undefined) this.#timer = undefined;
    else onTimeout();
  }
}

/**
 * Whether a command line holds CR, LF or NUL, which would end or cut it at the backend. One pass
 * over a line of at most a few hundred octets, where three Buffer#includes were three calls into C++.
 */
function breaksLine(bytes: Buffer): boolean {
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i];
    if (byte === LF || byte === CR || byte === 0) return true;
  }
  return false;
}

/** A line without its CRLF or bare LF (a view). */
export function withoutLineEnding(line: Buffer): Buffer {
  let end = line.length;
  if (end > 0 && line[end - 1] === LF) end -= 1;
  if (end > 0 && line[end - 1] === CR) end -= 1;
  return line.subarray(0, end);
}

/**
 * `first` then `second` as one buffer. A status line and the body read with it sit side by side
 * in the chunk they came in: then the result is a view over both, with nothing copied.
 */
function joined(first: Buffer, second: Buffer): Buffer {
  if (first.length === 0) return second;
  if (second.length === 0) return first;
  if (first.buffer === second.buffer && first.byteOffset + first.length === second.byteOffset) {
    return Buffer.from(first.buffer, first.byteOffset, first.length + second.length);
  }
  return Buffer.concat([first, second], first.length + second.length);
}
