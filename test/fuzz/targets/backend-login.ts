/**
 * The backend login (backend/login.ts over backend/link.ts): the status line reader, the CAPA
 * reader, the APOP timestamp finder and the SASL challenge reader, fed by a loopback server that
 * answers each command popwarden sends with the next reply of a fuzzed conversation, cut into
 * random pieces. Whatever the backend says, the login ends in a session or in one of the three
 * typed errors the session knows how to answer, within its step timeouts, and every line
 * popwarden sent is one clean command line.
 */
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import fc from 'fast-check';
import { loginToBackend } from '../../../src/backend/login.js';
import { Credentials } from '../../../src/auth/credentials.js';
import { BackendRejectedError, BackendUnavailableError, NoSafeMechanismError } from '../../../src/errors.js';
import { BACKEND_AUTH_MODES } from '../../../src/config/types.js';
import type { BackendMemory } from '../../../src/backend/memory.js';
import { ApopUsers } from '../../../src/backend/apop-users.js';
import { createLogger } from '../../../src/observability/log.js';
import { NO_METRICS } from '../../../src/observability/metrics.js';
import { testConfig } from '../../harness/popwarden.js';
import { splitAt } from '../../harness/chunks.js';
import { byteStream, randomBytes } from '../inputs.js';
import { defineTarget } from '../target.js';
import { BackendPrograms } from '../../../src/backend/programs.js';

const latin1 = (text: string) => Buffer.from(text, 'latin1');
const STEP_MS = 200;

/** Replies a POP3 server gives during a login, right and wrong. */
const greeting = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('+OK ready <1.2@host>\r\n', '+OK ready\r\n') },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '+OK\r\n', '+OK <a@b> <c@d>\r\n', '+OK <@>\r\n', `+OK <${'x'.repeat(130)}@h>\r\n`, '-ERR busy\r\n', '+OK ready\n',
      '+OK ready\r\n+OK again\r\n', '* OK IMAP\r\n', '+OK\x00\x1b[2J\r\n', `+OK ${'x'.repeat(600)}\r\n`,
    ),
  },
);
const capaLine = fc.constantFrom('USER', 'STLS', 'SASL PLAIN LOGIN CRAM-MD5', 'SASL CRAM-MD5', 'SASL', 'TOP', '.', '..', ' ', 'SASL PLAIN\x00');
const capaReply = fc.oneof(
  { weight: 3, arbitrary: fc.array(capaLine, { maxLength: 6 }).map((lines) => `+OK\r\n${lines.map((l) => `${l}\r\n`).join('')}.\r\n`) },
  { weight: 1, arbitrary: fc.constantFrom('-ERR no CAPA\r\n', '+OK\r\n', '+OK\r\nUSER\r\n', `+OK\r\n${'TOP\r\n'.repeat(70)}.\r\n`, '+OK\r\n.\r\n.\r\n', '+OK\r\nUSER\n.\n') },
);
const authReply = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('+OK logged in\r\n', '+ PDEyMzRAaG9zdD4=\r\n', '+ VXNlcm5hbWU6\r\n', '+ \r\n', '-ERR [AUTH] bad\r\n') },
  { weight: 2, arbitrary: fc.constantFrom('-ERR [SYS/TEMP] later\r\n', '+\r\n', '+ !!!!\r\n', '+OK\r\n+OK\r\n', '-ERR\r\n', 'garbage\r\n', `+ ${'QUFB'.repeat(200)}\r\n`) },
  { weight: 1, arbitrary: randomBytes(12).map((b) => Buffer.concat([latin1('+ '), b, latin1('\r\n')]).toString('latin1')) },
);

/** Mutates a reply now and then: a byte flipped, inserted, or the reply cut short. */
const mutated = (reply: fc.Arbitrary<string>): fc.Arbitrary<Buffer> =>
  fc.tuple(reply, fc.oneof({ weight: 5, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.tuple(fc.nat(), fc.constantFrom('flip', 'insert', 'cut'), fc.integer({ min: 0, max: 255 })) })).map(([text, change]) => {
    const bytes = latin1(text);
    if (change === null || bytes.length === 0) return bytes;
    const [at, kind, byte] = change;
    const i = at % bytes.length;
    if (kind === 'cut') return bytes.subarray(0, i);
    if (kind === 'insert') return Buffer.concat([bytes.subarray(0, i), Buffer.of(byte), bytes.subarray(i)]);
    const copy = Buffer.from(bytes);
    copy[i] = byte;
    return copy;
  });

interface Conversation {
  readonly replies: Buffer[];
  readonly cuts: number[];
  /** After the last reply: close, or stay silent (the step timeout must end the login). */
  readonly end: 'close' | 'silent';
}

const conversation: fc.Arbitrary<Conversation> = fc.record({
  replies: fc.tuple(mutated(greeting), mutated(capaReply), fc.array(fc.oneof({ weight: 8, arbitrary: mutated(authReply) }, { weight: 1, arbitrary: byteStream(['\r\n', '+OK', '-ERR', '+ '], 4, 4) }), { maxLength: 4 })).map(([g, c, rest]) => [g, c, ...rest]),
  cuts: fc.array(fc.nat(), { maxLength: 4 }),
  end: fc.constantFrom(...Array<'close'>(40).fill('close'), 'silent' as const),
});

let server: Server;
let port = 0;
let current: { conversation: Conversation; received: Buffer[]; socket?: Socket } | undefined;

function serve(socket: Socket): void {
  const talk = current;
  if (talk === undefined) return void socket.destroy();
  talk.socket = socket;
  socket.setNoDelay(true);
  socket.on('error', () => undefined);
  let next = 0;
  const answer = (): void => {
    const reply = talk.conversation.replies[next++];
    if (reply === undefined) {
      if (talk.conversation.end === 'close') socket.end();
      return;
    }
    for (const piece of splitAt(reply, talk.conversation.cuts)) if (piece.length > 0) socket.write(piece);
    // A reply cut before its LF leaves popwarden waiting for the rest: the conversation is over.
    const over = next === talk.conversation.replies.length || reply.at(-1) !== 0x0a;
    if (over && talk.conversation.end === 'close') socket.end();
  };
  let pending = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    for (let lf = pending.indexOf(0x0a); lf !== -1; lf = pending.indexOf(0x0a)) {
      // After STLS come TLS records, not command lines.
      if (!talk.received.some((l) => l.toString('latin1').toUpperCase() === 'STLS\r\n')) talk.received.push(pending.subarray(0, lf + 1));
      pending = pending.subarray(lf + 1);
      answer();
    }
  });
  answer();
}

/** How the logins ended, by error class and code: what the fuzzed conversations reached. */
export const outcomes = new Map<string, number>();

const acceptEveryOffer = { observe: () => ({ kind: 'ok' }) } as unknown as BackendMemory;
const log = createLogger('silent');
let apopUsers: ApopUsers;

export default defineTarget({
  name: 'backend-login',
  about: 'backend login over loopback against fuzzed replies: a session or a typed error, in time',
  input: fc.record({ conversation, auth: fc.constantFrom(...BACKEND_AUTH_MODES), tls: fc.constantFrom('off', 'off', 'off', 'auto' as const) }),
  defaultSeconds: 120,
  ciRuns: 80,
  // A few step timeouts of 200 ms at most, with room for a loaded machine.
  maxInputMs: 5_000,
  async setUp() {
    server = createServer(serve);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
    apopUsers = new ApopUsers(testConfig({ backend: { host: '127.0.0.1', port } }).rateLimit.usernameCanonical);
  },
  async tearDown() {
    await new Promise((resolve) => server.close(resolve));
  },
  async check({ conversation: talk, auth, tls }) {
    current = { conversation: talk, received: [] };
    const config = testConfig({
      backend: { host: '127.0.0.1', port, auth, tls, allowPlaintextAuth: true },
      timeouts: { backendConnectMs: 2_000, backendStepMs: STEP_MS, backendAuthMs: STEP_MS },
    });
    try {
      const session = await loginToBackend(new Credentials('alice', latin1('secret')), {
        backend: config.backends[0]!,
        client: { address: '192.0.2.1', port: 40_000, localAddress: '127.0.0.1', localPort: 995, via: undefined },
        tlsOptions: { rejectUnauthorized: true, servername: 'localhost' },
        timeouts: config.timeouts,
        log,
        metrics: NO_METRICS,
        memory: acceptEveryOffer,
        programs: { programs: new BackendPrograms(log), limit: 1, log },
        apopUsers,
        onIdleFailure: () => undefined,
      });
      session.link.destroy();
      outcomes.set(`logged in (${session.mechanism})`, (outcomes.get(`logged in (${session.mechanism})`) ?? 0) + 1);
    } catch (error) {
      const name = `${(error as Error).name} ${(error as { code?: string }).code ?? ''}`;
      outcomes.set(name, (outcomes.get(name) ?? 0) + 1);
      const typed = error instanceof BackendUnavailableError || error instanceof NoSafeMechanismError || error instanceof BackendRejectedError;
      if (!typed) throw error;
    } finally {
      current.socket?.destroy();
    }
    for (const line of current.received) {
      assert.ok(line.length >= 2 && line.subarray(-2).equals(latin1('\r\n')) && line.indexOf(0x0d) === line.length - 2 && !line.includes(0), `popwarden sent ${JSON.stringify(line.toString('latin1'))}`);
    }
  },
});
