/**
 * Backends that are programs (`backend: exec:/usr/sbin/ipop3d`), run the way inetd runs them: one
 * process per session, with one connected stream socket as its stdin AND its stdout, so that a
 * server may read, write, shutdown() or getsockname() either descriptor as it would under inetd.
 *
 * Node has no socketpair(). Its stdio 'pipe' is a socket pair inside libuv, but one per
 * descriptor, so stdin and stdout would be two different sockets. Instead popwarden listens on a
 * private UNIX socket in a directory only it may enter (mkdtemp: mode 0700, in the temporary
 * directory), connects to itself, and hands the accepted end to the child as descriptors 0 and 1.
 * Each connection first carries a 16-byte random token, so an accepted end is paired with the
 * spawn that asked for it, however connections interleave; one without a known token is closed.
 * The parent then closes its copy of the child's end (close, never shutdown: that would end the
 * child's socket too).
 *
 * Bounded: at most `limit` children at once; each is ended once popwarden's end of its socket
 * closes, which is how every session ends, whatever ends it: it reads EOF and normally exits at
 * once; if not within BACKEND_PROCESS_EXIT_GRACE_MS (BACKEND_LOGIN_EXIT_GRACE_MS when it never
 * logged in: it has no mailbox to write), SIGTERM to its process group, then SIGKILL after
 * BACKEND_PROCESS_KILL_GRACE_MS. Node reaps every child, so none is left a zombie. Its stderr is
 * kept up to MAX_BACKEND_STDERR_OCTETS and logged with its exit status, at most
 * MAX_BACKEND_STDERR_LINES_PER_MINUTE such lines a minute for the whole process.
 *
 * A wrong password holds its program through the backend's failure delay, so parallel wrong
 * passwords could hold every place. As inetd's `per_source` and Dovecot's login processes do, a
 * client address has at most limits.max_backend_logins_per_ip logins in progress (enterLogin,
 * held by the session's login until the client is answered), and a full bound makes room for a
 * new login by ending the oldest program still in its login (at least EVICTION_MIN_AGE_MS old),
 * or one already being ended after a failed login; the new program is started once that one has
 * exited, so the bound holds for processes, not only for places.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecCommand } from '../config/types.js';
import {
  BACKEND_LOGIN_EXIT_GRACE_MS,
  BACKEND_PROCESS_EXIT_GRACE_MS,
  BACKEND_PROCESS_KILL_GRACE_MS,
  MAX_BACKEND_STDERR_LINES_PER_MINUTE,
  MAX_BACKEND_STDERR_OCTETS,
} from '../config/limits.js';
import { BackendUnavailableError } from '../errors.js';
import { escapeForLog, type Logger } from '../observability/log.js';
import { DeadlineError, onceWithin } from '../net/once-within.js';
import { ipKey } from '../net/addresses.js';
import type { CidrList } from '../net/cidr.js';
import { oldestEvictable } from '../net/evict-oldest.js';
import { backendReadOptions } from './link.js';
import type { ClientOrigin } from '../net/proxy-intake.js';

/** The PATH inetd gives its servers; popwarden's own environment is never passed on. */
const CHILD_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

const TOKEN_OCTETS = 16;

/**
 * The child's environment: a PATH, the operator's variables, and the client's address (the one
 * a trusted PROXY header named, when there was one) under the names tcpd-era servers read, since
 * getpeername() on their socket cannot give it: ucspi-tcp's
 * (PROTO, TCPREMOTEIP, TCPREMOTEPORT, TCPLOCALIP, TCPLOCALPORT), the CGI-style REMOTE_ADDR and
 * REMOTE_PORT, and xinetd's REMOTE_HOST (an address, as xinetd sets it). Nothing of popwarden's own
 * environment (REDIS passwords, tokens) leaks to the child.
 */
export function childEnvironment(spec: ExecCommand, client: ClientOrigin | undefined): Record<string, string> {
  const addresses: Record<string, string> =
    client === undefined
      ? {}
      : {
          PROTO: 'TCP',
          TCPREMOTEIP: client.address,
          TCPREMOTEPORT: String(client.port),
          TCPLOCALIP: client.localAddress,
          TCPLOCALPORT: String(client.localPort),
          REMOTE_ADDR: client.address,
          REMOTE_PORT: String(client.port),
          REMOTE_HOST: client.address,
        };
  return { PATH: CHILD_PATH, ...spec.environment, ...addresses };
}

/**
 * Where a program is in its session: `login` until the backend accepts the credentials, then
 * `session`; `ending` once popwarden's end of its socket has closed (it is being ended).
 */
export type ProgramPhase = 'login' | 'session' | 'ending';

/** What BackendPrograms is told of one program's life, to keep its counts. */
interface ProgramWatcher {
  leftLogin(program: BackendProcess): void;
}

/** One running backend program. */
export class BackendProcess {
  readonly #child: ChildProcess;
  readonly #program: string;
  readonly #log: Logger;
  readonly #stderr: Buffer[] = [];
  #stderrOctets = 0;
  #stderrDropped = 0;
  #exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly exited: Promise<void>;
  #socketClosed = false;
  #reported = false;
  #killedByUs = false;
  /** It exited or hung up while its session still ran: a crash, or the server's own hang-up. */
  #endedMidSession = false;
  #killTimer: NodeJS.Timeout | undefined;
  #phase: ProgramPhase = 'login';
  /** Whether its login succeeded: then its end may be a mailbox being written, given the full grace. */
  #loggedIn = false;
  /** Its place was given to another login (BackendPrograms.start), which waits for its exit. */
  claimed = false;
  /** popwarden ended it to make room for another login: its own login fails with a reason saying so. */
  #evicted = false;
  #closeSocket: () => void = () => undefined;

  readonly #budget: LogBudget;
  /** When it started, by the clock BackendPrograms reads (its age decides whether it may be evicted). */
  readonly startedAt: number;
  readonly #watcher: ProgramWatcher;

  constructor(
    child: ChildProcess,
    program: string,
    log: Logger,
    budget: LogBudget,
    place: { readonly startedAt: number; readonly watcher: ProgramWatcher },
  ) {
    this.#child = child;
    this.#budget = budget;
    this.#program = program;
    this.#log = log;
    this.startedAt = place.startedAt;
    this.#watcher = place.watcher;
    child.stderr?.on('data', (chunk: Buffer) => {
      const room = MAX_BACKEND_STDERR_OCTETS - this.#stderrOctets;
      // A copy: a view would keep the whole (up to 64 KiB) read buffer alive.
      if (room > 0) this.#stderr.push(Buffer.from(chunk.subarray(0, room)));
      this.#stderrOctets += Math.min(room, chunk.length);
      this.#stderrDropped += Math.max(0, chunk.length - Math.max(room, 0));
    });
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.#exit = { code, signal };
        if (!this.#socketClosed) this.#endedMidSession = true;
        clearTimeout(this.#killTimer);
        this.#leaveLogin('ending');
        resolve();
      });
    });
    // stderr is read to its end before 'close'; the line waits for it and for our socket.
    child.once('close', () => this.#maybeReport());
  }

  get phase(): ProgramPhase {
    return this.#phase;
  }

  /** Whether popwarden ended it to make room for another login. */
  get evicted(): boolean {
    return this.#evicted;
  }

  /** The backend accepted the credentials: the program serves a session now, and is no longer evicted for room. */
  loggedIn(): void {
    if (this.#phase !== 'login') return;
    this.#loggedIn = true;
    this.#leaveLogin('session');
  }

  /** How popwarden closes its end of the socket (BackendPrograms sets it once the socket exists). */
  set closeSocket(close: () => void) {
    this.#closeSocket = close;
  }

  /**
   * Ends it to make room for another login: its socket is closed, so its login fails at whatever
   * step it was, and it gets SIGTERM after the login grace, SIGKILL after the kill grace. One info
   * line on its session's log says why.
   */
  evict(ageMs: number): void {
    if (this.#evicted) return;
    this.#evicted = true;
    this.#log.info({ program: this.#program, programPid: this.#child.pid, ageMs: Math.round(ageMs) }, 'backend program ended to make room for another login');
    this.#closeSocket();
  }

  #leaveLogin(next: ProgramPhase): void {
    if (this.#phase === 'ending' || (this.#phase === 'session' && next === 'session')) return;
    const wasLogin = this.#phase === 'login';
    this.#phase = next;
    if (wasLogin) this.#watcher.leftLogin(this);
  }

  /** The child closed its end first (EOF on ours): it ended the session, not popwarden. */
  socketEnded(): void {
    if (!this.#socketClosed) this.#endedMidSession = true;
  }

  /**
   * Our end of the child's socket closed (the session is over): make sure the child ends too. It
   * has EOF now; if it has not exited within the exit grace, SIGTERM, and SIGKILL after another.
   */
  socketClosed(): void {
    if (this.#socketClosed) return;
    this.#socketClosed = true;
    this.#leaveLogin('ending');
    if (this.#exit === undefined) {
      this.#killTimer = setTimeout(() => {
        this.#killedByUs = true;
        this.#signalGroup('SIGTERM');
        this.#killTimer = setTimeout(() => this.#signalGroup('SIGKILL'), BACKEND_PROCESS_KILL_GRACE_MS);
      }, this.#exitGraceMs());
    }
    this.#maybeReport();
  }

  /** How long it may take to exit on its own: a logged-in one may be writing the mailbox after QUIT. */
  #exitGraceMs(): number {
    return this.#loggedIn ? BACKEND_PROCESS_EXIT_GRACE_MS : BACKEND_LOGIN_EXIT_GRACE_MS;
  }

  /**
   * The error for a link that closed before the greeting: the program's exit status and stderr,
   * naming it, so the one log line of the failed login says everything (and the exit line is not
   * written twice). Waits for the exit, which the closed socket brings within the exit and kill
   * graces at most.
   */
  async earlyExitError(): Promise<BackendUnavailableError> {
    this.#reported = true;
    await this.exited;
    await new Promise<void>((resolve) => (this.#child.stderr === null || this.#child.stderr.closed ? resolve() : this.#child.stderr.once('close', () => resolve())));
    return new BackendUnavailableError('E_BACKEND_EXEC', 'greeting', `${this.#program} ${this.#status()} before its greeting${this.#stderrText()}`);
  }

  #status(): string {
    const exit = this.#exit;
    if (exit === undefined) return 'is still running';
    return exit.signal !== null ? `was killed by ${exit.signal}` : `exited with status ${exit.code ?? '?'}`;
  }

  #stderrText(): string {
    if (this.#stderrOctets === 0) return '';
    return `; stderr: ${this.#stderrKept()}${this.#stderrDropped > 0 ? ` (${this.#stderrDropped} more octets dropped)` : ''}`;
  }

  /** What was kept of its stderr, safe to log (control bytes escaped). */
  #stderrKept(): string {
    return escapeForLog(Buffer.concat(this.#stderr).toString('latin1').trim(), MAX_BACKEND_STDERR_OCTETS);
  }

  #signalGroup(signal: NodeJS.Signals): void {
    const pid = this.#child.pid;
    // Only while the child is unreaped: its pid (and so its group id) cannot have been reused.
    if (pid === undefined || this.#exit !== undefined) return;
    try {
      process.kill(-pid, signal);
    } catch {
      this.#child.kill(signal);
    }
  }

  /**
   * One line per child, once it has exited and the session is done with it: debug for a quiet
   * clean exit; info when it wrote to stderr (legacy servers log there) or exited badly after its
   * session had ended (EOF where it wanted QUIT); warn when it died on its own mid-session or had
   * to be killed. The info and warn lines share the per-minute budget.
   */
  #maybeReport(): void {
    if (this.#reported || this.#exit === undefined || !this.#socketClosed || this.#child.stderr?.closed === false) return;
    this.#reported = true;
    const exit = this.#exit;
    const failed = exit.code !== 0 || exit.signal !== null;
    // Ending a program whose login failed or whose place was taken is routine (a wrong password, a
    // flood); killing one that served a session, or a crash mid-session, is not.
    const troubled = (this.#killedByUs && this.#loggedIn) || (failed && this.#endedMidSession && !this.#evicted);
    const fields = { program: this.#program, programPid: this.#child.pid, exitCode: exit.code, signal: exit.signal };
    if (!troubled && !failed && this.#stderrOctets === 0) {
      this.#log.debug(fields, 'backend program exited');
      return;
    }
    const suppressed = this.#budget.take();
    if (suppressed === undefined) return;
    const line = {
      ...fields,
      ...(this.#stderrOctets === 0 ? {} : { stderr: this.#stderrKept() }),
      ...(this.#stderrDropped === 0 ? {} : { stderrDropped: this.#stderrDropped }),
      ...(suppressed === 0 ? {} : { linesSuppressed: suppressed }),
      ...(this.#killedByUs
        ? { note: `still running ${this.#exitGraceMs()} ms after its session ended${exit.signal === 'SIGKILL' ? `, and ignored SIGTERM for ${BACKEND_PROCESS_KILL_GRACE_MS} ms` : ''}` }
        : {}),
    };
    if (troubled) this.#log.warn(line, 'backend program exited');
    else this.#log.info(line, 'backend program exited');
  }
}

/** A per-minute allowance of log lines; take() says how many were suppressed since the last one, or undefined when none is left. */
export class LogBudget {
  #windowStart = 0;
  #used = 0;
  #suppressed = 0;

  take(now = Date.now()): number | undefined {
    if (now - this.#windowStart >= 60_000) {
      this.#windowStart = now;
      this.#used = 0;
    }
    if (this.#used >= MAX_BACKEND_STDERR_LINES_PER_MINUTE) {
      this.#suppressed += 1;
      return undefined;
    }
    this.#used += 1;
    const suppressed = this.#suppressed;
    this.#suppressed = 0;
    return suppressed;
  }
}

/** A connection to popwarden's private socket, waiting for its token. */
interface PendingPair {
  readonly resolve: (childEnd: Socket) => void;
}

/** How BackendPrograms tells client addresses apart, and the clock of the programs' ages. */
export interface ProgramAddressing {
  /** rate_limit.ipv6_prefix: IPv6 clients share a share by this network. */
  readonly ipv6PrefixLength: number;
  /** rate_limit.allow: addresses with no per-address share. */
  readonly exempt?: CidrList;
  /** The clock, in ms, for the programs' ages (default performance.now). */
  readonly now?: () => number;
}

/** What one start is allowed: the bound (read per login, so a reload applies), whose it is, its log. */
export interface ProgramStart {
  /** limits.max_backend_processes */
  readonly limit: number;
  readonly client: ClientOrigin | undefined;
  readonly log: Logger;
  readonly timeoutMs: number;
}

/** Every backend program of the process: the cap, the private socket, and shutdown. */
export class BackendPrograms {
  readonly #log: Logger;
  readonly #pending = new Map<string, PendingPair>();
  /** Running programs, oldest first (a Set keeps insertion order). */
  readonly #running = new Set<BackendProcess>();
  /** The running programs still in their login, oldest first: what a full bound may evict. */
  readonly #inLogin = new Set<BackendProcess>();
  /** Programs being ended after a login that did not succeed, whose place nobody has taken yet. */
  readonly #endingUnclaimed = new Set<BackendProcess>();
  /** Per client address key: logins in progress (enterLogin), until each is answered. */
  readonly #loginsByAddress = new Map<string, number>();
  readonly #budget = new LogBudget();
  /** Starts under way (not yet running, not yet failed): they hold a place under the cap. */
  #starting = 0;
  /** Running programs whose place a waiting start holds already (counted there, not twice). */
  #claimed = 0;
  readonly #addressing: ProgramAddressing;
  readonly #now: () => number;
  readonly #watcher: ProgramWatcher = {
    leftLogin: (program) => {
      this.#inLogin.delete(program);
      if (program.phase === 'ending' && !program.claimed) this.#endingUnclaimed.add(program);
    },
  };
  #server: Promise<{ server: Server; path: string; dir: string }> | undefined;

  constructor(log: Logger, addressing: ProgramAddressing = { ipv6PrefixLength: 64 }) {
    this.#log = log;
    this.#addressing = addressing;
    this.#now = addressing.now ?? (() => performance.now());
  }

  /** Programs running now. */
  get running(): number {
    return this.#running.size;
  }

  /**
   * A place among the logins in progress from `client`'s address (limits.max_backend_logins_per_ip:
   * `share`, 0 for none), and its release (idempotent). Taken before the login's program starts and
   * released when the client has been answered, a failure at its deadline: released when the
   * program refused instead, it would tell another connection from the address when the backend
   * refused, which the failure deadline hides (A-06). Throws E_BACKEND_BUSY when the address has
   * `share` logins in progress already. Addresses in rate_limit.allow have no share.
   */
  enterLogin(client: ClientOrigin, share: number): () => void {
    const key = share > 0 && this.#addressing.exempt?.has(client.address) !== true ? ipKey(client.address, this.#addressing.ipv6PrefixLength) : undefined;
    if (key === undefined) return () => undefined;
    // Counted at once: logins that start together cannot all pass.
    if ((this.#loginsByAddress.get(key) ?? 0) >= share) {
      throw new BackendUnavailableError('E_BACKEND_BUSY', 'connect', `${share} backend logins are in progress for this address (limits.max_backend_logins_per_ip)`);
    }
    this.#countLogin(key, 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#countLogin(key, -1);
    };
  }

  /**
   * Starts `spec` for one session and returns popwarden's end of its socket, paused like a fresh
   * TCP connection. When `limit` places are taken, the place of a program being ended after a
   * failed login, or else of the oldest program still in its login (EVICTION_MIN_AGE_MS old at
   * least, which is then ended), is taken and its exit awaited. Throws BackendUnavailableError:
   * E_BACKEND_BUSY when no place can be had; E_BACKEND_EXEC when the program cannot be started
   * (missing, not executable).
   */
  async start(spec: ExecCommand, options: ProgramStart): Promise<{ socket: Socket; process: BackendProcess }> {
    let predecessor: BackendProcess | undefined;
    if (this.#running.size - this.#claimed + this.#starting >= options.limit) {
      predecessor = this.#placeToTake();
      if (predecessor === undefined) {
        throw new BackendUnavailableError('E_BACKEND_BUSY', 'connect', `${options.limit} backend programs are running (limits.max_backend_processes)`);
      }
    }
    this.#starting += 1;
    try {
      if (predecessor !== undefined) await this.#exitOf(predecessor, options.timeoutMs);
      return await this.#start(spec, options);
    } finally {
      this.#starting -= 1;
    }
  }

  /**
   * A running program whose place a new start may take, marked as taken: one being ended after a
   * failed login, or else the oldest still in its login, old enough, which is ended now.
   */
  #placeToTake(): BackendProcess | undefined {
    const ending = this.#endingUnclaimed.values().next().value;
    const now = this.#now();
    const victim = ending ?? oldestEvictable(this.#inLogin.values(), now, (program) => !program.claimed);
    if (victim === undefined) return undefined;
    this.#endingUnclaimed.delete(victim);
    victim.claimed = true;
    this.#claimed += 1;
    if (ending === undefined) victim.evict(now - victim.startedAt);
    return victim;
  }

  /** Resolves when `program` has exited; it has been ended, so within the login and kill graces. */
  async #exitOf(program: BackendProcess, timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        program.exited,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new BackendUnavailableError('E_BACKEND_BUSY', 'connect', `the backend program whose place this login took did not exit within ${timeoutMs} ms`)),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  #countLogin(addressKey: string, delta: 1 | -1): void {
    const count = (this.#loginsByAddress.get(addressKey) ?? 0) + delta;
    if (count <= 0) this.#loginsByAddress.delete(addressKey);
    else this.#loginsByAddress.set(addressKey, count);
  }

  async #start(spec: ExecCommand, options: ProgramStart): Promise<{ socket: Socket; process: BackendProcess }> {
    const { ours, theirs } = await this.#pair(options.timeoutMs);
    let child: ChildProcess;
    try {
      child = spawn(spec.command, spec.args, {
        stdio: [theirs, theirs, 'pipe'],
        env: childEnvironment(spec, options.client),
        cwd: spec.cwd ?? '/',
        // Its own process group, so that the kill at the session's end reaches what it forked,
        // and a signal meant for popwarden's terminal does not.
        detached: true,
      });
    } catch (error) {
      theirs.destroy();
      ours.destroy();
      throw this.#cannotRun(spec, error);
    }
    const started = new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
    try {
      await started;
    } catch (error) {
      ours.destroy();
      throw this.#cannotRun(spec, error);
    } finally {
      // The child holds its own copies now (or never will): close ours, never shut it down.
      theirs.destroy();
    }
    child.on('error', () => undefined); // a failed kill(); the exit is what counts
    options.log.debug({ program: spec.command, programPid: child.pid }, 'backend program started');
    const program = new BackendProcess(child, spec.command, options.log, this.#budget, { startedAt: this.#now(), watcher: this.#watcher });
    this.#running.add(program);
    this.#inLogin.add(program);
    void program.exited.then(() => {
      this.#running.delete(program);
      this.#endingUnclaimed.delete(program);
      if (program.claimed) this.#claimed -= 1;
    });
    program.closeSocket = () => ours.destroy();
    ours.once('end', () => program.socketEnded());
    ours.once('close', () => program.socketClosed());
    if (ours.destroyed) program.socketClosed();
    return { socket: ours, process: program };
  }

  /** Waits until every program has exited (sessions kill theirs as they close), then removes the private socket. */
  async close(): Promise<void> {
    await Promise.all([...this.#running].map((program) => program.exited));
    const listening = this.#server;
    this.#server = undefined;
    if (listening === undefined) return;
    const { server, dir } = await listening;
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  }

  #cannotRun(spec: ExecCommand, error: unknown): BackendUnavailableError {
    const code = (error as NodeJS.ErrnoException).code;
    const meaning = code === 'ENOENT' ? 'it (or its working directory) does not exist' : code === 'EACCES' ? 'it is not executable' : (error as Error).message;
    return new BackendUnavailableError('E_BACKEND_EXEC', 'connect', `cannot run ${spec.command}: ${meaning}`, { cause: error });
  }

  /** A connected pair of stream sockets through the private listener: ours (paused) and the child's. */
  async #pair(timeoutMs: number): Promise<{ ours: Socket; theirs: Socket }> {
    const { path } = await (this.#server ??= this.#listen());
    const token = randomBytes(TOKEN_OCTETS).toString('hex');
    const accepted = new Promise<Socket>((resolve) => this.#pending.set(token, { resolve }));
    const ours = connect({ path, onread: backendReadOptions });
    try {
      await onceWithin(ours, 'connect', timeoutMs, { what: 'connection' });
      // Nothing may be read before the BackendLink listens (see dial.ts); the child is not even
      // started yet, so nothing arrives, but reads stay off from here on all the same.
      ours.pause();
      ours.write(Buffer.from(token, 'hex'));
      let timer: NodeJS.Timeout | undefined;
      const theirs = await Promise.race([
        accepted,
        new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new DeadlineError('pairing', timeoutMs)), timeoutMs))),
      ]).finally(() => clearTimeout(timer));
      return { ours, theirs };
    } catch (error) {
      this.#pending.delete(token);
      ours.destroy();
      throw new BackendUnavailableError('E_BACKEND_EXEC', 'connect', `no socket for the backend program: ${(error as Error).message}`, { cause: error });
    }
  }

  async #listen(): Promise<{ server: Server; path: string; dir: string }> {
    const dir = mkdtempSync(join(tmpdir(), 'popwarden-exec-'));
    const path = join(dir, 'pair.sock');
    const server = createServer({ pauseOnConnect: false }, (socket) => this.#onPairConnection(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.unref();
    server.on('error', (error) => this.#log.error({ err: error.message }, 'backend program socket failed'));
    return { server, path, dir };
  }

  /** Reads the token (nothing else is sent before the child exists), then hands the socket over. */
  #onPairConnection(socket: Socket): void {
    let received = Buffer.alloc(0);
    socket.on('error', () => undefined);
    const onData = (chunk: Buffer): void => {
      received = Buffer.concat([received, chunk]);
      if (received.length < TOKEN_OCTETS) return;
      socket.off('data', onData);
      socket.pause();
      const pending = received.length === TOKEN_OCTETS ? this.#pending.get(received.toString('hex')) : undefined;
      if (pending === undefined) {
        socket.destroy();
        return;
      }
      this.#pending.delete(received.toString('hex'));
      pending.resolve(socket);
    };
    socket.on('data', onData);
  }
}
