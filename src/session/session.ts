import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Config, ListenerConfig } from '../config/types.js';
import {
  MAX_COMMAND_LINE_OCTETS,
  MAX_QUEUED_CLIENT_LINES,
  MAX_SASL_LINE_OCTETS,
} from '../config/limits.js';
import { LineFramer, type FramedLine } from '../net/line-codec.js';
import { detectForeignProtocol } from '../net/hygiene.js';
import { upgradeToTls } from '../net/starttls.js';
import { DeadlineError, onceWithin } from '../net/once-within.js';
import type { TlsMaterial } from '../net/tls-material.js';
import type { ClientOrigin } from '../net/proxy-intake.js';
import type { Logger } from '../observability/log.js';
import { parseCommand, type Command } from '../pop3/grammar.js';
import { Reply, line } from '../pop3/replies.js';
import type { BackendSession } from '../backend/login.js';
import { writeBorrowed } from '../backend/link.js';
import type { BackendUnavailableError } from '../errors.js';
import type { Metrics } from '../observability/metrics.js';
import {
  AUTHORIZATION_COMMANDS,
  checkCommand,
  TRANSACTION_COMMANDS,
  TRANSACTION_EXTENSION,
  type CommandSpec,
} from './commands.js';
import type { SessionContext } from './context.js';
import { invalid, type Outcome } from './outcome.js';
import { SessionState, type CloseReason } from './states.js';
import { PROTOCOL_ERRORS } from './close-reasons.js';
import { authenticate, type LoginDependencies } from './login.js';

export interface SessionDependencies extends LoginDependencies {
  readonly listener: ListenerConfig;
  readonly tls: TlsMaterial;
  readonly log: Logger;
  /** Told once, when the session has ended. */
  readonly onClosed: (session: Session) => void;
  /**
   * Told when the session has logged in, with the username the client gave (its address becomes
   * a returning client of that account). Default: nobody is told.
   */
  readonly onLoggedIn?: (client: ClientOrigin, user: string) => void;
  /** Told when the session ends in a protocol error (PROTOCOL_ERRORS). Default: nobody is told. */
  readonly onProtocolError?: (client: ClientOrigin) => void;
}

/** How long a closing socket may take to flush its last line before it is destroyed. */
const CLOSE_FLUSH_MS = 5_000;

/** The session a client socket belongs to, for the listeners all sessions share (Session.#listeners). */
const SESSION = Symbol('popwarden.session');
type ClientSocket = (Socket | TLSSocket) & { [SESSION]?: Session | undefined };

/**
 * One client connection, from popwarden's greeting to the close. It owns the client socket, the
 * line framer, the timers and the state; it reads lines into a small queue and serves them one at
 * a time through the command table, so a login that waits on the backend simply holds back the
 * commands pipelined behind it.
 */
export class Session implements SessionContext {
  readonly id = randomBytes(6).toString('hex');
  readonly config: Config;
  readonly metrics: Metrics;

  readonly #deps: SessionDependencies;
  /** Made on first use and dropped at login (see `log`). */
  #log: Logger | undefined;
  #socket: Socket | TLSSocket;
  #secure: boolean;
  #state: SessionState = SessionState.authorization;
  /** The username given by USER in this TLS session, waiting for PASS. */
  #pendingUser: string | undefined;
  readonly #framer = new LineFramer(MAX_SASL_LINE_OCTETS);
  #queue: FramedLine[] = [];
  #lineArrived: (() => void) | undefined;
  #serving = false;
  #draining = false;
  #clientFinished = false;
  /** Made on first request: most sessions end without anyone waiting for them. */
  #closed: Promise<void> | undefined;
  #resolveClosed: (() => void) | undefined;
  #firstChunkSeen = false;
  #corked = false;
  #invalidCommands = 0;
  /** Commands read before login, against limits.max_commands_before_login. */
  #commandsBeforeLogin = 0;
  /** Login attempts so far in this session (auth_http's Auth-Login-Attempt). */
  #loginAttempts = 0;
  #backend: BackendSession | undefined;
  /**
   * The backend link failed while no reply was outstanding but a command was still being served
   * (its reply waiting for the client to drain): acted on once serving ends, or the session would
   * stay open over a dead backend until the client's next command or the idle timeout.
   */
  #backendFailedWhileServing: BackendUnavailableError | undefined;
  readonly #client: ClientOrigin;
  readonly #openedAt = Date.now();
  #preAuthTimer: NodeJS.Timeout | undefined;
  #idleTimer: NodeJS.Timeout | undefined;

  /**
   * `deps` are shared by every session of a listener (made once, not per connection); `client`
   * is who this one is: the socket's peer, or the one its load balancer's PROXY header names.
   */
  constructor(socket: Socket | TLSSocket, secure: boolean, deps: SessionDependencies, client: ClientOrigin) {
    this.#deps = deps;
    this.config = deps.config;
    this.metrics = deps.metrics;
    this.#socket = socket;
    this.#secure = secure;
    this.#client = client;
    this.#preAuthTimer = setTimeout(() => this.#onPreAuthTimeout(), deps.config.timeouts.preAuthMs);
  }

  /**
   * The session's logger: a child of the process logger with the session's bindings. A pino
   * child costs about half a KiB (its bindings serialised, its own level methods), so it is made
   * when something logs and dropped once the session has logged in: an idle logged-in session,
   * the kind popwarden holds thousands of, logs nothing until it closes (issue 10.4). The
   * bindings themselves (id, client, listener) are kept anyway.
   */
  get log(): Logger {
    if (this.#log === undefined) {
      const client = this.#client;
      this.#log = this.#deps.log.child({
        sid: this.id,
        peer: `${client.address}:${client.port}`,
        // The load balancer that carried a proxied client, so its own logs can be matched.
        ...(client.via === undefined ? {} : { via: client.via }),
        listener: this.#deps.listener.name,
      });
    }
    return this.#log;
  }

  /** Resolves once the session has closed. */
  get closed(): Promise<void> {
    if (this.#closed === undefined) {
      if (this.#state === SessionState.closed) this.#closed = Promise.resolve();
      else this.#closed = new Promise<void>((resolve) => (this.#resolveClosed = resolve));
    }
    return this.#closed;
  }

  get listenerKind(): ListenerConfig['kind'] {
    return this.#deps.listener.kind;
  }

  get secure(): boolean {
    return this.#secure;
  }

  get pendingUser(): string | undefined {
    return this.#pendingUser;
  }

  get state(): SessionState {
    return this.#state;
  }

  get backend(): BackendSession {
    if (this.#backend === undefined) throw new Error('no backend before login');
    return this.#backend;
  }

  /**
   * Whether this session may be closed to make room under limits.max_sessions: not logged in,
   * and not in the middle of STLS (its handshake is evictable under limits.max_handshakes).
   * AUTHENTICATING qualifies: a refused or rate-limited guess waits there for the failure
   * deadline, so a client that sends its next PASS at once is almost never in AUTHORIZATION, and
   * guessing from enough addresses would hold the bound. The whole state, not only the wait after
   * a verdict, so that an eviction tells nothing of when the backend judged. Closing it
   * costs its client a retry; the attempt is still counted (session/login.ts).
   */
  get evictable(): boolean {
    return this.#state === SessionState.authorization || this.#state === SessionState.authenticating;
  }

  /** Closes the session to make room for a newer one, with the farewell of a full server. */
  evict(): void {
    this.close('evicted', Reply.serverBusy);
  }

  /** Closes a session that never started, with the farewell of a server that is stopping. */
  turnAwayShuttingDown(): void {
    this.close('server-shutdown', Reply.shuttingDown);
  }

  /** Sends popwarden's greeting (never the backend's) and starts reading. */
  start(): void {
    // Asked of the process logger first, here and at every state change: a session whose lines
    // are all below the level never makes its child logger (see `log`).
    if (this.#deps.log.isLevelEnabled('debug')) this.log.debug({ tls: this.#secure }, 'session opened');
    this.#attach(this.#socket);
    this.write(line(`+OK ${this.config.greeting}`));
  }

  write(bytes: Buffer): void {
    if (this.#state !== SessionState.closed) this.#socket.write(bytes);
  }

  /** Relayed reply bytes, which may be a view valid only during the call: false when the client is full. */
  writeToClient(chunk: Buffer): boolean {
    return this.#state !== SessionState.closed && writeBorrowed(this.#socket, chunk);
  }

  /** Resolves when the client has taken what was written; rejects if it stalls or goes away. */
  clientDrained(): Promise<void> {
    return this.#drained();
  }

  // ---- reading and serving lines ----------------------------------------------------------

  #onData(chunk: Buffer): void {
    if (!this.#firstChunkSeen) {
      this.#firstChunkSeen = true;
      const foreign = detectForeignProtocol(chunk);
      if (foreign === 'tls' && !this.#secure) return this.close('tls-on-plaintext-port');
      if (foreign === 'http') return this.close('http-on-pop3-port', Reply.unknownCommand);
    }
    const lines = this.#framer.push(chunk);
    this.#queue.push(...lines);
    // Backpressure on a client that pipelines faster than it is served.
    if (this.#queue.length >= MAX_QUEUED_CLIENT_LINES) this.#socket.pause();
    if (lines.length > 1) this.#corkUntilNextTurn();
    this.#lineArrived?.();
    void this.#serve();
  }

  /**
   * Pipelined commands that arrived together get their replies in one write: the socket has
   * TCP_NODELAY, so without this every short reply would be its own TLS record and segment.
   * Uncorked on the next turn of the event loop, whatever the handlers do meanwhile, so no
   * reply (a SASL challenge, STLS's +OK) ever waits on anything but this turn's other replies.
   */
  #corkUntilNextTurn(): void {
    if (this.#corked) return;
    const socket = this.#socket;
    this.#corked = true;
    socket.cork();
    setImmediate(() => {
      this.#corked = false;
      socket.uncork();
    });
  }

  /** Serves queued lines in order; one runs at a time. */
  async #serve(): Promise<void> {
    if (this.#serving) return;
    this.#serving = true;
    let servedThisTurn = 0;
    try {
      while (this.#state !== SessionState.closed && this.#queue.length > 0) {
        if (this.#draining) {
          this.close('server-shutdown', Reply.shuttingDown);
          break;
        }
        const next = this.#queue.shift()!;
        if (this.#queue.length < MAX_QUEUED_CLIENT_LINES / 2) this.#socket.resume();
        // Awaited only when there is something to wait for: most handlers answer at once, and a
        // relayed reply needs one wait, for the backend (issue 10: each await is a promise and a
        // microtask per command).
        let outcome = this.#dispatch(next);
        if (outcome instanceof Promise) outcome = await outcome;
        const rendering = this.#render(outcome);
        if (rendering !== undefined) await rendering;
        if (this.#socket.writableNeedDrain) await this.#drained().catch(() => this.close('client-write-stall'));
        // One read can hold thousands of pipelined commands, and over loopback or a fast link the
        // kernel takes every reply at once, so nothing above ever makes this loop wait: give the
        // event loop back every MAX_QUEUED_CLIENT_LINES commands, or one client holds every other
        // session and timer for as long as its flood lasts (issue 14.3). Corked again afterwards,
        // so the next batch's replies still leave in one write.
        servedThisTurn += 1;
        if (servedThisTurn >= MAX_QUEUED_CLIENT_LINES && this.#queue.length > 0) {
          servedThisTurn = 0;
          await new Promise((resolve) => setImmediate(resolve));
          if (this.#queue.length > 1) this.#corkUntilNextTurn();
        }
      }
    } catch (error) {
      this.log.error({ err: error }, 'unexpected error while serving a command');
      this.close('client-error', Reply.backendLost);
    } finally {
      this.#serving = false;
      if (this.#backendFailedWhileServing !== undefined) this.#onBackendIdleFailure(this.#backendFailedWhileServing);
      if (this.#draining) this.close('server-shutdown');
      if (this.#clientFinished && this.#queue.length === 0) this.close('client-closed');
      // An empty queue gives its backing store back (it grew with the pipelined lines): an idle
      // session keeps an empty array, not room for the last burst (issue 10.4). A new one: an
      // array's length set to 0 is a call into V8's runtime, on every command (issue 10).
      if (this.#queue.length === 0) this.#queue = [];
      this.#armIdleTimer();
    }
  }

  /**
   * Server shutdown: a command in flight (a RETR under way) may finish; the next one is answered
   * -ERR [SYS/TEMP] and the session closes. An idle session closes at once. The backend never
   * gets a QUIT from this, so nothing is deleted (D-08).
   */
  drain(): void {
    this.#draining = true;
    if (!this.#serving) this.close('server-shutdown');
  }

  #dispatch(framed: FramedLine): Outcome | Promise<Outcome> {
    if (this.#state !== SessionState.transaction && this.#overCommandBudget()) {
      return { kind: 'close', reason: 'too-many-commands-before-login', text: Reply.tooManyCommandsBeforeLogin };
    }
    if (framed.kind === 'too-long' || framed.line.length + 2 > MAX_COMMAND_LINE_OCTETS) {
      return { kind: 'close', reason: 'line-too-long', text: Reply.lineTooLong };
    }
    const command = parseCommand(framed.line);
    if (command === undefined) return invalid(Reply.unknownCommand);
    const spec: CommandSpec | undefined =
      this.#state === SessionState.transaction
        ? (TRANSACTION_COMMANDS[command.verb] ?? TRANSACTION_EXTENSION)
        : AUTHORIZATION_COMMANDS[command.verb];
    if (spec === undefined) return invalid(Reply.unknownCommand);
    if (spec.usesPendingUser === true || spec.secret === true) return this.#runAndForget(spec, command, framed.line);
    return this.#run(spec, command, framed.line);
  }

  #run(spec: CommandSpec, command: Command, rawLine: Buffer): Outcome | Promise<Outcome> {
    const refusal = checkCommand(spec, command, rawLine, this);
    if (refusal !== undefined) return refusal;
    // Checked on the process logger: `this.log` would make the session's child again on every command.
    if (this.#deps.log.isLevelEnabled('trace')) this.log.trace({ verb: command.verb }, 'command');
    return spec.handle(command, this, rawLine);
  }

  /** Runs a command that uses up the pending USER or carries a secret, and forgets those whatever its outcome. */
  async #runAndForget(spec: CommandSpec, command: Command, rawLine: Buffer): Promise<Outcome> {
    try {
      return await this.#run(spec, command, rawLine);
    } finally {
      // PASS uses up the USER before it, whatever its outcome (RFC 1939 §7).
      if (spec.usesPendingUser === true) this.#pendingUser = undefined;
      if (spec.secret === true) rawLine.fill(0);
    }
  }

  /**
   * Counts one more command before login: true once it is past limits.max_commands_before_login.
   * Every line counts, valid or not (SASL continuations are read by their AUTH, not here): a
   * pipelined flood of CAPA is as costly as one of garbage, and only the invalid ones meet
   * max_invalid_commands. After login the backend paces the client, one reply per command.
   */
  #overCommandBudget(): boolean {
    const budget = this.config.limits.maxCommandsBeforeLogin;
    this.#commandsBeforeLogin += 1;
    return budget > 0 && this.#commandsBeforeLogin > budget;
  }

  /** Acts on a handler's outcome: at once, or with a promise for the steps that wait (STLS, a login). */
  #render(outcome: Outcome): Promise<void> | undefined {
    switch (outcome.kind) {
      case 'replied':
        return;
      case 'reply':
        this.write(line(outcome.text));
        return;
      case 'invalid':
        this.#invalidCommands += 1;
        if (this.#invalidCommands > this.config.limits.maxInvalidCommands) {
          this.close('too-many-invalid-commands', Reply.tooManyErrors);
        } else {
          this.write(line(outcome.text));
        }
        return;
      case 'close':
        this.close(outcome.reason, outcome.text);
        return;
      case 'upgradeTls':
        return this.#upgradeTls();
      case 'awaitPass':
        this.#pendingUser = outcome.user;
        this.write(line(Reply.userAccepted));
        return;
      case 'logIn':
        return this.#logIn(outcome);
      case 'authenticated':
        if (this.#isClosed()) {
          outcome.backend.link.destroy();
          return;
        }
        this.#backend = outcome.backend;
        // Dropped, not only cleared: an idle session would keep the timer and its closure.
        clearTimeout(this.#preAuthTimer);
        this.#preAuthTimer = undefined;
        this.#enterState(SessionState.transaction, 'logged in');
        this.#deps.onLoggedIn?.(this.#client, outcome.user);
        this.write(line(Reply.loggedIn));
        // Nothing logs while a logged-in session idles: its child logger goes until it is needed.
        this.#log = undefined;
        return;
    }
  }

  async #logIn(outcome: Extract<Outcome, { kind: 'logIn' }>): Promise<void> {
    this.#enterState(SessionState.authenticating, 'credentials complete');
    const result = await authenticate(
      {
        credentials: outcome.credentials,
        mechanism: outcome.mechanism,
        client: this.#client,
        tlsProtocol: this.#secure ? (this.#socket as TLSSocket).getProtocol() : null,
        attempt: ++this.#loginAttempts,
        log: this.log,
        clientGone: () => this.#isClosed(),
        onBackendIdleFailure: (error) => this.#onBackendIdleFailure(error),
      },
      this.#deps,
    );
    if (result.kind !== 'authenticated') this.#enterState(SessionState.authorization, 'login failed');
    return this.#render(result);
  }

  readContinuation(): Promise<Buffer | 'too-long' | 'closed'> {
    return new Promise((resolve) => {
      const take = (): void => {
        if (this.#state === SessionState.closed) return resolve('closed');
        const next = this.#queue.shift();
        if (next === undefined && this.#clientFinished) return resolve('closed'); // nothing more will come
        if (next === undefined) {
          this.#lineArrived = take;
          return;
        }
        this.#lineArrived = undefined;
        this.#socket.resume();
        resolve(next.kind === 'too-long' ? 'too-long' : next.line);
      };
      take();
    });
  }

  // ---- STLS ------------------------------------------------------------------------------

  async #upgradeTls(): Promise<void> {
    const plain = this.#socket as Socket;
    // Stop reading in clear BEFORE answering, and forget everything already read: a command
    // pipelined behind STLS must never run inside TLS (CVE-2011-0411 class, S-01..S-03).
    this.#detach(plain);
    plain.pause();
    // The session's own error listener is gone with the detach; without one, a reset during the
    // upgrade would be an unhandled 'error' that ends the whole process.
    let lostInUpgrade: Error | undefined;
    const onUpgradeError = (error: Error): void => void (lostInUpgrade ??= error);
    plain.on('error', onUpgradeError);
    const discarded = this.#queue.length;
    this.#queue = [];
    this.#framer.reset();
    this.#pendingUser = undefined;
    if (discarded > 0) this.log.warn({ discardedLines: discarded }, 'discarded commands pipelined after STLS');
    this.#enterState(SessionState.upgrading, 'STLS');
    await new Promise<void>((resolve) => plain.write(line(Reply.beginTls), () => resolve()));
    if (lostInUpgrade !== undefined || plain.destroyed) {
      plain.off('error', onUpgradeError);
      this.log.debug({ err: lostInUpgrade }, 'client went away before the TLS handshake');
      this.close('client-closed');
      return;
    }
    const listener = this.#deps.listener.name;
    const handshakeStarted = performance.now();
    try {
      const secured = await upgradeToTls(plain, this.#deps.tls, this.config.timeouts.tlsHandshakeMs, this.#client.address);
      const version = secured.getProtocol() ?? undefined;
      this.metrics.tlsHandshake(listener, 'success', version, (performance.now() - handshakeStarted) / 1000);
      this.metrics.stlsUpgrade(listener, 'success', discarded);
      this.#socket = secured;
      this.#secure = true;
      this.#firstChunkSeen = false;
      this.log.debug({ protocol: version }, 'STLS handshake complete');
      this.#enterState(SessionState.authorization, 'TLS established');
      this.#attach(secured);
    } catch (error) {
      const result = error instanceof DeadlineError ? 'timeout' : 'failure';
      this.metrics.tlsHandshake(listener, result, undefined, (performance.now() - handshakeStarted) / 1000);
      this.metrics.stlsUpgrade(listener, 'failure', discarded);
      this.log.info({ err: error }, 'STLS handshake failed');
      this.close('tls-handshake-failed');
    }
  }

  // ---- timers and closing ----------------------------------------------------------------

  #onPreAuthTimeout(): void {
    if (this.#state === SessionState.transaction || this.#state === SessionState.closed) return;
    const canSpeak = this.#state === SessionState.authorization;
    this.close('pre-auth-timeout', canSpeak ? Reply.loginTimeout : undefined);
  }

  /** RFC 1939 §3 autologout: only while no command is outstanding (D-11), and silently. */
  #armIdleTimer(): void {
    if (this.#state !== SessionState.transaction || this.#serving) return;
    // One timer per session, pushed back after every command rather than made anew.
    // Its callback is shared by every session and told which one: no closure kept per session.
    if (this.#idleTimer === undefined) this.#idleTimer = setTimeout(Session.#idleExpired, this.config.timeouts.idleMs, this);
    else this.#idleTimer.refresh();
  }

  /** A command being served is not idleness (D-11): the timer restarts once it is done. */
  static #idleExpired(session: Session): void {
    if (!session.#serving) session.close('idle-timeout');
  }

  #onBackendIdleFailure(error: BackendUnavailableError): void {
    if (this.#state !== SessionState.transaction) return;
    if (this.#serving) {
      this.#backendFailedWhileServing = error;
      return;
    }
    this.log.warn({ code: error.code, reason: error.message }, 'backend connection ended while idle');
    this.metrics.backendError(error.code);
    this.close(error.code === 'E_BACKEND_PROTOCOL' ? 'backend-protocol-error' : 'backend-closed', Reply.backendLost);
  }

  /** Resolves when the client has taken what was written; rejects if it stalls or goes away. */
  #drained(): Promise<void> {
    if (!this.#socket.writableNeedDrain) return Promise.resolve();
    return onceWithin(this.#socket, 'drain', this.config.timeouts.clientWriteStallMs, {
      what: 'progress from the client',
      failOn: ['close'],
    });
  }

  /**
   * Ends the session. The backend link is always dropped without QUIT (a QUIT from the client
   * was already relayed): the backend must never enter UPDATE on popwarden's initiative (D-07).
   * With a farewell line the client socket is flushed and ended; without, what was written is
   * still flushed (a truncated reply stays truncated) and the socket ends.
   */
  close(reason: CloseReason, farewell?: string): void {
    if (this.#state === SessionState.closed) return;
    const previous = this.#state;
    this.#state = SessionState.closed;
    clearTimeout(this.#preAuthTimer);
    clearTimeout(this.#idleTimer);
    this.#backend?.link.destroy();
    this.#lineArrived?.();
    const socket = this.#socket;
    this.#detach(socket);
    socket.on('error', () => undefined);
    if (socket.destroyed) {
      // nothing to flush
    } else if (reason === 'client-closed' || reason === 'client-error' || reason === 'client-write-stall') {
      socket.destroy();
    } else {
      if (farewell === undefined) socket.end();
      else socket.end(line(farewell));
      setTimeout(() => socket.destroy(), CLOSE_FLUSH_MS).unref();
    }
    this.log.info({ reason, state: previous }, 'session closed');
    this.metrics.sessionClosed(this.#deps.listener.name, reason, (Date.now() - this.#openedAt) / 1000);
    if (PROTOCOL_ERRORS.has(reason)) this.#deps.onProtocolError?.(this.#client);
    this.#deps.onClosed(this);
    this.#resolveClosed?.();
  }

  /** A method, not a field test, so TypeScript does not narrow the state across awaits. */
  #isClosed(): boolean {
    return this.#state === SessionState.closed;
  }

  #enterState(next: SessionState, why: string): void {
    if (this.#state === SessionState.closed) return;
    if (this.#deps.log.isLevelEnabled('debug')) this.log.debug({ from: this.#state, to: next, why }, 'state');
    this.#state = next;
  }

  /**
   * The client socket's listeners: one set of functions for every session, each finding its
   * session through the socket, rather than four closures kept by each of thousands of idle
   * sessions (issue 10.4). `this` is the socket, as Node calls a listener.
   */
  static readonly #listeners = {
    data(this: ClientSocket, chunk: Buffer): void {
      const session = this[SESSION];
      if (session !== undefined) session.#onData(chunk);
    },
    end(this: ClientSocket): void {
      const session = this[SESSION];
      if (session !== undefined) session.#onClientFinished();
    },
    close(this: ClientSocket): void {
      this[SESSION]?.close('client-closed');
    },
    error(this: ClientSocket, error: Error): void {
      const session = this[SESSION];
      if (session !== undefined) session.#onClientError(error);
    },
  };

  #attach(socket: ClientSocket): void {
    socket[SESSION] = this;
    const listeners = Session.#listeners;
    socket.on('data', listeners.data);
    socket.on('end', listeners.end);
    socket.on('close', listeners.close);
    socket.on('error', listeners.error);
  }

  #detach(socket: ClientSocket): void {
    const listeners = Session.#listeners;
    socket.off('data', listeners.data);
    socket.off('end', listeners.end);
    socket.off('close', listeners.close);
    socket.off('error', listeners.error);
    socket[SESSION] = undefined;
  }

  /**
   * The client shut down its sending side (FIN, or TLS close_notify after STLS). Commands it sent
   * before are still served, in order, and their replies written, so a scripted `DELE 1`, `QUIT`,
   * then shutdown still commits; then the session closes. Nothing queued: close now.
   */
  #onClientFinished(): void {
    // Without allowHalfOpen (implicit-TLS listeners: Node cannot keep a half-open TLS server
    // socket before its session exists) Node has already ended our side too: nothing to serve.
    if (!this.#socket.allowHalfOpen) return this.close('client-closed');
    this.#clientFinished = true;
    this.#lineArrived?.();
    if (!this.#serving && this.#queue.length === 0) this.close('client-closed');
  }

  #onClientError(error: Error): void {
    this.log.debug({ err: error }, 'client socket error');
    this.close('client-error');
  }
}
