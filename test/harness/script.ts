/**
 * Session tests as conversations (OpenSMTPD's smtpscript shape): a Session is handed one end of
 * an in-memory socket pair, the test plays the client on the other end from `C:`/`S:` lines, and
 * the backend is a loopback listener playing its own `C:`/`S:` script (popwarden dials the
 * backend itself, from config.backend). No sleeps: every step waits on the bytes it expects.
 *
 * Script lines: `C: text` is a line the client of that conversation sends (CRLF added; several
 * `C:` lines in a row go out as one write, so they arrive pipelined); `S: text` is a line the
 * server sends. Directives in place of text: `C: (end)` half-closes the client side,
 * `S: (end)` is the server closing (for the session: the client sees the end and nothing unread);
 * on a backend script `S: (reset)` hangs up abruptly; `(flush)` ends a write, so the lines after it
 * leave in a write of their own (whether they arrive in a read of their own is the network's say).
 */
import { Router } from '../../src/backend/routing/router.js';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { TLSSocket, connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { Session } from '../../src/session/session.js';
import { FailureDeadline } from '../../src/session/failure-deadline.js';
import { BackendMemory } from '../../src/backend/memory.js';
import { BackendPrograms } from '../../src/backend/programs.js';
import { ApopUsers } from '../../src/backend/apop-users.js';
import { NO_METRICS } from '../../src/observability/metrics.js';
import { ALLOW_ALL, type LoginGuard } from '../../src/auth/login-guard.js';
import { createLogger } from '../../src/observability/log.js';
import type { Config } from '../../src/config/types.js';
import { directOrigin } from '../../src/net/proxy-intake.js';
import { ByteInbox } from './inbox.js';
import { LogCapture } from './log-capture.js';
import { memorySocketPair, type MemorySocket } from './memory-socket.js';
import { startFakeBackend, type FakeBackend, type FakeConn } from './fake-backend.js';
import { testConfig, testTlsMaterial } from './popwarden.js';
import { scratchDir } from './scratch.js';

const STEP_TIMEOUT_MS = 5_000;

/** One step of a conversation. */
interface Step {
  readonly from: 'C' | 'S';
  readonly text: string;
}

function parseSteps(lines: readonly string[]): Step[] {
  return lines.map((l) => {
    const match = /^([CS]): ?(.*)$/s.exec(l);
    if (match === null) throw new Error(`not a script line (want "C: ..." or "S: ..."): ${JSON.stringify(l)}`);
    return { from: match[1] as 'C' | 'S', text: match[2]! };
  });
}

/** One side of a conversation: how it sends, and how it reads the other side. */
interface Party {
  readonly we: 'C' | 'S';
  send(bytes: Buffer): void;
  finish(how: '(end)' | '(reset)'): void;
  readonly inbox: ByteInbox;
}

/** Plays `lines` as party `party.we`, asserting every line the other side sends. */
async function converse(party: Party, lines: readonly string[]): Promise<void> {
  const steps = parseSteps(lines);
  for (let i = 0; i < steps.length; ) {
    const step = steps[i]!;
    if (step.from === party.we) {
      if (step.text === '(end)' || step.text === '(reset)') {
        party.finish(step.text);
        i += 1;
        continue;
      }
      if (step.text === '(flush)') {
        i += 1;
        continue;
      }
      // Everything this side says in a row leaves in one write.
      const run: string[] = [];
      while (i < steps.length && steps[i]!.from === party.we && !/^\((end|reset|flush)\)$/.test(steps[i]!.text)) {
        run.push(`${steps[i]!.text}\r\n`);
        i += 1;
      }
      party.send(Buffer.from(run.join(''), 'latin1'));
      continue;
    }
    if (step.text === '(end)') {
      await party.inbox.whenEnded(STEP_TIMEOUT_MS);
      assert.equal(party.inbox.unread().toString('latin1'), '', `step ${i + 1}: bytes left before the end`);
    } else {
      const got = await party.inbox.readLine(STEP_TIMEOUT_MS);
      assert.equal(got?.toString('latin1') ?? '(end)', step.text, `step ${i + 1} of the ${party.we === 'C' ? 'client' : 'backend'} script`);
    }
    i += 1;
  }
}

// ---- the backend side --------------------------------------------------------------------

/** A loopback backend that plays one script per connection. */
export interface ScriptedBackend extends FakeBackend {
  /** Resolves when connection `n` (1-based) has played its script; rejects with its failure. */
  finished(n?: number): Promise<void>;
}

/**
 * Starts a backend that plays `lines` (`S:` its own, `C:` what popwarden must send) on each
 * connection; or, given several scripts, the n-th on connection n (the last one on any after).
 */
export async function scriptedBackend(lines: readonly string[] | readonly (readonly string[])[]): Promise<ScriptedBackend> {
  const scripts = (lines.length > 0 && Array.isArray(lines[0]) ? lines : [lines]) as readonly (readonly string[])[];
  for (const one of scripts) parseSteps(one); // a typo fails here, not inside a connection
  const backend = await startFakeBackend((conn: FakeConn) =>
    converse(
      {
        we: 'S',
        send: (bytes) => void conn.write(bytes),
        finish: (how) => (how === '(end)' ? conn.end() : conn.destroy()),
        inbox: conn.inbox,
      },
      scripts[Math.min(conn.id, scripts.length) - 1]!,
    ),
  );
  return {
    ...backend,
    async finished(n = 1) {
      const conn = backend.connections()[n - 1];
      if (conn === undefined) throw new Error(`the backend has no connection ${n}`);
      await conn.done;
      if (conn.scriptError !== undefined) throw conn.scriptError;
    },
  };
}

/**
 * Scripted backends for one suite: `backend(lines)` starts one, and `stopAll()` (the suite's
 * `after`) hangs up every session still open and stops every backend started.
 */
export function scriptedBackends(): {
  backend: (lines: Parameters<typeof scriptedBackend>[0]) => Promise<ScriptedBackend>;
  stopAll: () => Promise<void>;
} {
  const started: ScriptedBackend[] = [];
  return {
    async backend(lines) {
      const one = await scriptedBackend(lines);
      started.push(one);
      return one;
    },
    async stopAll() {
      await closeSessions();
      await Promise.all(started.map((b) => b.stop()));
    },
  };
}

// ---- the client side ---------------------------------------------------------------------

/** A Session under test with the client end of its in-memory socket. */
export interface ScriptedSession {
  readonly session: Session;
  /** The client's end: the in-memory socket, or the TLS client over it on the 'tls' listener. */
  readonly client: Duplex;
  /** The client's in-memory socket itself, under TLS on the 'tls' listener (holdWindow() is there). */
  readonly wire: MemorySocket;
  readonly inbox: ByteInbox;
  readonly logs: LogCapture;
}

export interface ScriptedSessionOptions {
  /** Where popwarden dials its backend. */
  readonly backend: { readonly host: string; readonly port: number };
  /** Which listener the session came from: 'tls' (secure from the first byte) or 'stls' (default). */
  readonly listener?: 'tls' | 'stls';
  /** Changes to the test configuration. */
  readonly config?: (config: Config) => Config;
  /** Failed-login protection (default: none). */
  readonly guard?: LoginGuard;
  /** What the session has learnt of APOP users (default: nothing yet). */
  readonly apopUsers?: ApopUsers;
}

const open = new Set<ScriptedSession>();

/**
 * Starts a Session over an in-memory socket pair, as a listener would hand it a socket: on the
 * 'tls' listener after a real TLS handshake over the pair (the session reads the protocol off
 * its TLSSocket), on 'stls' in clear.
 */
export async function openSession(options: ScriptedSessionOptions): Promise<ScriptedSession> {
  const kind = options.listener ?? 'stls';
  const base = testConfig({ backend: options.backend, stateDir: scratchDir('popwarden-state') });
  const config = options.config?.(base) ?? base;
  const logs = new LogCapture();
  const log = createLogger('trace', logs.stream);
  const tls = testTlsMaterial();
  const pair = memorySocketPair();
  let client: Duplex = pair.client;
  let server: Socket = pair.server.asSocket();
  if (kind === 'tls') {
    const secured = new TLSSocket(server, { isServer: true, secureContext: tls.secureContext });
    const connected = tlsConnect({ socket: pair.client, rejectUnauthorized: false });
    await Promise.all([once(secured, 'secure'), once(connected, 'secureConnect')]);
    server = secured;
    client = connected;
  }
  const session = new Session(server, kind === 'tls', {
    config,
    listener: config.listeners.find((l) => l.kind === kind)!,
    tls,
    router: new Router(config, [], log, NO_METRICS),
    backendPrograms: new BackendPrograms(createLogger('silent')),
    log,
    metrics: NO_METRICS,
    guard: options.guard ?? ALLOW_ALL,
    failureDeadline: new FailureDeadline(log),
    backendMemory: new BackendMemory(config.stateDir),
    apopUsers: options.apopUsers ?? new ApopUsers(config.rateLimit.usernameCanonical),
    onClosed: () => undefined,
  }, directOrigin(server));
  const inbox = new ByteInbox(client);
  const scripted = { session, client, wire: pair.client, inbox, logs };
  open.add(scripted);
  void session.closed.then(() => open.delete(scripted));
  session.start();
  return scripted;
}

/** Hangs up every session still open (their timers would keep the test process alive). */
export async function closeSessions(): Promise<void> {
  const sessions = [...open];
  for (const { client } of sessions) client.destroy();
  await Promise.all(sessions.map(({ session }) => session.closed));
}

/** Plays the client's side of `lines` against the session (`S:` lines are the session's replies). */
export function script(pop: ScriptedSession, lines: readonly string[]): Promise<void> {
  return converse(
    {
      we: 'C',
      send: (bytes) => void pop.client.write(bytes),
      finish: (how) => (how === '(end)' ? pop.client.end() : pop.client.destroy()),
      inbox: pop.inbox,
    },
    lines,
  );
}
