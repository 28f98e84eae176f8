/**
 * A whole client session (session/session.ts with the command table, SASL, the login and the
 * relay) fed random streams over an in-memory socket, in front of a loopback POP3 server. Beyond
 * "nothing throws and the session ends", it checks what reaches the backend: only clean command
 * lines, none of the verbs popwarden keeps for itself after the login (R-10), and no QUIT (which
 * would commit deletions) unless the client itself sent one.
 */
import { Router } from '../../../src/backend/routing/router.js';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import fc from 'fast-check';
import { Session } from '../../../src/session/session.js';
import { FailureDeadline } from '../../../src/session/failure-deadline.js';
import { ALLOW_ALL } from '../../../src/auth/login-guard.js';
import { parseCommand } from '../../../src/pop3/grammar.js';
import { REFUSED_AFTER_LOGIN } from '../../../src/relay/policy.js';
import type { BackendMemory } from '../../../src/backend/memory.js';
import { ApopUsers } from '../../../src/backend/apop-users.js';
import { directOrigin } from '../../../src/net/proxy-intake.js';
import { createLogger } from '../../../src/observability/log.js';
import { NO_METRICS } from '../../../src/observability/metrics.js';
import type { Config } from '../../../src/config/types.js';
import { memorySocketPair } from '../../harness/memory-socket.js';
import { testConfig, testTlsMaterial } from '../../harness/popwarden.js';
import { splitAt } from '../../harness/chunks.js';
import { randomBytes } from '../inputs.js';
import { defineTarget } from '../target.js';
import { BackendPrograms } from '../../../src/backend/programs.js';

const latin1 = (text: string) => Buffer.from(text, 'latin1');
const b64 = (text: string) => latin1(text).toString('base64');
const MESSAGE = 'Subject: hi\r\n\r\n.dot\r\nbody\r\n';

/** A small correct POP3 server: one mailbox (bob/bobpass, one message), every line it got kept. */
function pop3Server(onConnection: (lines: string[]) => void): Server {
  return createServer((socket: Socket) => {
    const lines: string[] = [];
    onConnection(lines);
    socket.setNoDelay(true);
    socket.on('error', () => undefined);
    const say = (text: string) => socket.write(latin1(text));
    say('+OK fake ready\r\n');
    let loggedIn = false;
    let rest = '';
    socket.on('data', (chunk: Buffer) => {
      rest += chunk.toString('latin1');
      for (let lf = rest.indexOf('\n'); lf !== -1; lf = rest.indexOf('\n')) {
        const line = rest.slice(0, lf + 1);
        rest = rest.slice(lf + 1);
        lines.push(line);
        const [verb = '', ...args] = line.replace(/\r?\n$/, '').split(' ');
        const multi = (body: string) => say(`+OK\r\n${body}.\r\n`);
        switch (verb.toUpperCase()) {
          case 'CAPA': multi('USER\r\nTOP\r\nUIDL\r\n'); break;
          case 'USER': say('+OK\r\n'); break;
          case 'PASS': loggedIn = args.join(' ') === 'bobpass'; say(loggedIn ? '+OK in\r\n' : '-ERR [AUTH] no\r\n'); break;
          case 'STAT': say('+OK 1 30\r\n'); break;
          case 'LIST': if (args.length > 0) say(args[0] === '1' ? '+OK 1 30\r\n' : '-ERR no such message\r\n'); else multi('1 30\r\n'); break;
          case 'UIDL': if (args.length > 0) say(args[0] === '1' ? '+OK 1 u1\r\n' : '-ERR no such message\r\n'); else multi('1 u1\r\n'); break;
          case 'RETR': case 'TOP': if (args[0] === '1') multi(MESSAGE.replace('\r\n.dot', '\r\n..dot')); else say('-ERR no such message\r\n'); break;
          case 'QUIT': say('+OK bye\r\n'); socket.end(); break;
          case 'DELE': case 'NOOP': case 'RSET': say('+OK\r\n'); break;
          default: say('-ERR unknown\r\n');
        }
      }
    });
  });
}

const word = fc.oneof(fc.constantFrom('1', '2', '0', '', 'x', '4294967297', b64('\0bob\0bobpass'), b64('bob'), '*', '='), fc.string({ maxLength: 4 }));
const command = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(fc.mixedCase(fc.constantFrom('STAT', 'LIST', 'RETR', 'TOP', 'UIDL', 'DELE', 'RSET', 'NOOP', 'LAST', 'CAPA', 'STLS', 'USER', 'PASS', 'APOP', 'AUTH', 'XTND', 'QUIT', 'PLAIN', 'LOGIN')), fc.array(word, { maxLength: 3 })).map(([verb, args]) => [verb, ...args].join(' ')) },
  { weight: 1, arbitrary: fc.constantFrom('USER bob', 'PASS bobpass', 'AUTH PLAIN', `AUTH PLAIN ${b64('\0bob\0bobpass')}`, 'AUTH LOGIN', b64('bobpass'), 'QUIT\r\nDELE 1', 'STAT\rDELE 1', 'A'.repeat(1200)) },
  { weight: 2, arbitrary: randomBytes(16).map((b) => b.toString('latin1')) },
);

interface Stream {
  readonly login: 'none' | 'user' | 'plain';
  readonly bytes: Buffer;
  readonly cuts: number[];
  readonly ending: 'fin' | 'reset';
}

const stream: fc.Arbitrary<Stream> = fc.record({
  login: fc.constantFrom('none', 'user', 'user', 'plain'),
  bytes: fc.tuple(fc.array(command, { maxLength: 14 }), fc.constantFrom('\r\n', '\n')).map(([lines, eol]) => latin1(lines.map((l) => l + eol).join(''))),
  cuts: fc.array(fc.nat(), { maxLength: 6 }),
  ending: fc.constantFrom('fin', 'fin', 'fin', 'reset'),
});

let server: Server;
let config: Config;
let backendLines: string[][] = [];
const log = createLogger('silent');
const tls = testTlsMaterial();
const failureDeadline = new FailureDeadline(log);
/** What the backend was sent over the run, by verb: how deep the streams got. */
const verbsSeen = new Map<string, number>();
const acceptEveryOffer = { observe: () => ({ kind: 'ok' }) } as unknown as BackendMemory;

/** True if any line of the client's stream, as popwarden frames lines, is a QUIT command. */
function clientSentQuit(bytes: Buffer): boolean {
  return bytes.toString('latin1').split('\n').some((line) => parseCommand(latin1(line.replace(/\r$/, '')))?.verb === 'QUIT');
}

export default defineTarget({
  name: 'session',
  about: 'whole sessions over memory sockets before a loopback server: clean lines reach it, no QUIT unasked',
  input: stream,
  defaultSeconds: 120,
  ciRuns: 200,
  maxInputMs: 10_000,
  async setUp() {
    server = pop3Server((lines) => backendLines.push(lines));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    config = testConfig({ backend: { host: '127.0.0.1', port, tls: 'off' }, stateDir: '/nonexistent-unused' });
  },
  async tearDown() {
    await new Promise((resolve) => server.close(resolve));
  },
  notes() {
    const byCount = [...verbsSeen].sort((a, b) => b[1] - a[1]);
    const others = byCount.slice(15).reduce((sum, [, n]) => sum + n, 0);
    return `the backend was sent ${byCount.slice(0, 15).map(([verb, n]) => `${verb} ${n}`).join(', ')} and ${others} lines of other verbs`;
  },
  async check(input) {
    backendLines = [];
    const { client, server: end } = memorySocketPair();
    // The session reads the client's TLS version for its audit line: this in-memory "TLS" is 1.3.
    Object.assign(end, { getProtocol: () => 'TLSv1.3' });
    const session = new Session(end.asSocket(), true, {
      config,
      listener: config.listeners.find((l) => l.kind === 'tls')!,
      tls,
      router: new Router(config, [], log, NO_METRICS),
      backendPrograms: new BackendPrograms(log),
      log,
      metrics: NO_METRICS,
      guard: ALLOW_ALL,
      failureDeadline,
      backendMemory: acceptEveryOffer,
      apopUsers: new ApopUsers(config.rateLimit.usernameCanonical),
      onClosed: () => undefined,
    }, directOrigin(end.asSocket()));
    client.on('data', () => undefined);
    client.on('error', () => undefined);
    session.start();
    const preface = { none: '', user: 'USER bob\r\nPASS bobpass\r\n', plain: `AUTH PLAIN ${b64('\0bob\0bobpass')}\r\n` }[input.login];
    const sent = Buffer.concat([latin1(preface), input.bytes]);
    for (const piece of splitAt(sent, input.cuts)) if (piece.length > 0) client.write(piece);
    if (input.ending === 'reset') client.destroy();
    else client.end();
    await session.closed;
    client.destroy();

    const quitAllowed = clientSentQuit(sent);
    for (const lines of backendLines) {
      let loggedIn = false;
      for (const line of lines) {
        assert.ok(line.endsWith('\r\n') && line.indexOf('\r') === line.length - 2, `a backend line with a stray CR or a bare LF: ${JSON.stringify(line)}`);
        // A password goes as the client gave it, 8-bit and control bytes included, but never NUL, CR or LF.
        const isPass = /^PASS /i.test(line);
        const command = parseCommand(latin1(isPass ? 'PASS x' : line.slice(0, -2)));
        assert.ok(command !== undefined, `the backend got a line that is no command: ${JSON.stringify(line)}`);
        verbsSeen.set(command.verb, (verbsSeen.get(command.verb) ?? 0) + 1);
        if (isPass) assert.ok(!line.slice(0, -2).includes('\0'), 'a password with NUL reached the backend');
        if (loggedIn) assert.ok(!REFUSED_AFTER_LOGIN.has(command.verb), `the backend got ${command.verb} after the login`);
        if (command.verb === 'PASS') loggedIn = true;
        if (command.verb === 'QUIT') assert.ok(quitAllowed, 'the backend got QUIT that the client never sent');
      }
    }
  },
});
