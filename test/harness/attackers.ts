/**
 * Attack generators for issue 14.3, shared by test/e2e/attacks.test.ts (small, functional
 * assertions) and bench/attacks.ts (bounded load, timings): each attack runs from many loopback
 * source addresses (127.0.0.0/8 is all loopback on Linux) and tallies what popwarden answered,
 * one label per attempt ("-ERR [SYS/TEMP] Too many failed logins", "closed", ...). Every attack is
 * bounded in time and in connections; every socket it opens is destroyed before it resolves.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { connectPop } from './clients.js';

export interface AttackTarget {
  readonly host: string;
  readonly tlsPort: number;
  readonly stlsPort: number;
  /** PEM of the certificate popwarden serves (the legitimate client verifies it). */
  readonly caFile: string;
}

export type AttackKind =
  | 'slowloris-110'
  | 'slowloris-995'
  | 'connection-flood'
  | 'tls-handshake-flood'
  | 'pipelined-flood'
  | 'oversized-sasl'
  | 'garbage-protocols'
  | 'credential-stuffing'
  | 'one-user-many-addresses';

export const ATTACK_KINDS: readonly AttackKind[] = [
  'slowloris-110', 'slowloris-995', 'connection-flood', 'tls-handshake-flood', 'pipelined-flood',
  'oversized-sasl', 'garbage-protocols', 'credential-stuffing', 'one-user-many-addresses',
];

export interface AttackOptions {
  readonly target: AttackTarget;
  /** Source addresses, used round-robin. */
  readonly sources: readonly string[];
  /** Slowloris: sockets held at once. Every other kind: attempts in flight at once. */
  readonly concurrency: number;
  /** No new attempt starts after this long; slowloris sockets are let go at it. */
  readonly durationMs: number;
  /** At most this many attempts in all (slowloris: ignored, `concurrency` is the count). */
  readonly maxAttempts?: number;
  /** The user whose password one-user-many-addresses guesses. */
  readonly victim?: string;
  /** Commands per pipelined-flood connection (default 2,000). */
  readonly pipelineDepth?: number;
}

export interface AttackReport {
  readonly kind: AttackKind;
  readonly attempts: number;
  /** How many attempts ended with each outcome. */
  readonly outcomes: Readonly<Record<string, number>>;
}

/** The first line of `text` (CRLF or LF), at most 80 characters: an outcome label. */
const firstLine = (text: string): string => text.split(/\r?\n/, 1)[0]!.slice(0, 80);

/**
 * Runs `socket` until it closes or `ms` pass; resolves with everything received (latin1) and
 * whether the server closed it. Destroys the socket in every case.
 */
function collect(socket: Socket, ms: number, onChunk?: (chunk: string) => void): Promise<{ received: string; closed: boolean }> {
  return new Promise((resolve) => {
    let received = '';
    const done = (closed: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ received, closed });
    };
    const timer = setTimeout(() => done(false), ms);
    socket.on('data', (chunk: Buffer) => {
      const text = chunk.toString('latin1');
      // A flood's replies are counted as they come, not kept.
      if (onChunk === undefined) received += text;
      else onChunk(text);
    });
    socket.on('error', () => undefined);
    socket.once('close', () => done(true));
  });
}

const plain = (target: AttackTarget, source: string): Socket => {
  const socket = netConnect({ host: target.host, port: target.stlsPort, localAddress: source });
  socket.on('error', () => undefined);
  return socket;
};

const secure = (target: AttackTarget, source: string): TLSSocket => {
  return tlsOver(netConnect({ host: target.host, port: target.tlsPort, localAddress: source }));
};

/** TLS over a TCP socket already bound to its source address; an attacker does not verify. */
const tlsOver = (tcp: Socket): TLSSocket => {
  tcp.on('error', () => undefined);
  const socket = tlsConnect({ socket: tcp, rejectUnauthorized: false, servername: 'localhost' });
  socket.on('error', () => undefined);
  socket.once('close', () => tcp.destroy());
  return socket;
};

/** Resolves once `socket` has received a line (or closed): the greeting, or the refusal. */
const greeted = (socket: Socket, ms = 10_000): Promise<string | undefined> =>
  new Promise((resolve) => {
    let text = '';
    const finish = (line: string | undefined): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      resolve(line);
    };
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('latin1');
      if (text.includes('\r\n')) finish(firstLine(text));
    };
    const onClose = (): void => finish(undefined);
    const timer = setTimeout(() => finish(undefined), ms);
    socket.on('data', onData);
    socket.once('close', onClose);
  });

/** One attempt of a looping attack: resolves with its outcome label. */
type Attempt = (target: AttackTarget, source: string, n: number, options: AttackOptions) => Promise<string>;

/** Connect to 110, take the greeting (or the refusal), hang up. */
const connectionFlood: Attempt = async (target, source) => {
  const socket = plain(target, source);
  const line = await greeted(socket);
  socket.destroy();
  return line?.startsWith('+OK') === true ? 'greeted' : (line ?? 'closed');
};

/** A full TLS handshake on 995 (the server's private-key operation), then hang up. */
const tlsHandshakeFlood: Attempt = (target, source) =>
  new Promise((resolve) => {
    const socket = secure(target, source);
    const timer = setTimeout(() => finish('timeout'), 15_000);
    const finish = (label: string): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(label);
    };
    socket.once('secureConnect', () => finish('handshake completed'));
    socket.once('close', () => finish('closed before the handshake'));
  });

/**
 * `depth` CAPA commands in one write on 110, then read every reply: counts how many came back
 * before the server closed (and with which last line) or stopped answering.
 */
const terminators = (text: string): number => (text.match(/\r\n\.\r\n/g) ?? []).length;

const pipelinedFlood: Attempt = async (target, source, _n, options) => {
  const depth = options.pipelineDepth ?? 2_000;
  const socket = plain(target, source);
  const greeting = await greeted(socket);
  if (greeting?.startsWith('+OK') !== true) {
    socket.destroy();
    return greeting ?? 'closed';
  }
  socket.write('CAPA\r\n'.repeat(depth));
  let answered = 0;
  let tail = '';
  const { closed } = await collect(socket, 20_000, (chunk) => {
    // Count CAPA terminators: those in tail + chunk, less those the tail held, counted before.
    // The tail covers a terminator split between two chunks and keeps the last line.
    const text = tail + chunk;
    answered += terminators(text) - terminators(tail);
    tail = text.slice(-200);
    if (answered >= depth) socket.destroy();
  });
  if (answered >= depth) return 'every command answered';
  const last = tail.split('\r\n').filter((l) => l !== '').at(-1) ?? '';
  const farewell = last.startsWith('-ERR') ? `, then ${firstLine(last)}` : '';
  return closed ? `closed after ${answered} replies${farewell}` : 'stopped answering';
};

/**
 * AUTH PLAIN over implicit TLS with an initial response longer than SASL allows (300 base64
 * characters, the 255 rule) or a continuation line of 64 KiB: the reply to it.
 */
const oversizedSasl: Attempt = async (target, source, n) => {
  const socket = secure(target, source);
  if ((await greeted(socket)) === undefined) return 'closed';
  if (n % 2 === 0) {
    socket.write(`AUTH PLAIN ${'QUFB'.repeat(75)}\r\n`);
  } else {
    socket.write('AUTH PLAIN\r\n');
    const challenge = await greeted(socket);
    if (challenge !== '+ ') {
      socket.destroy();
      return `continuation refused: ${challenge ?? 'closed'}`;
    }
    socket.write(`${'QUFB'.repeat(16 * 1024)}\r\n`);
  }
  const { received, closed } = await collect(socket, 10_000);
  const kind = n % 2 === 0 ? 'inline 300 chars' : 'continuation 64 KiB';
  return `${kind}: ${firstLine(received) || '(no reply)'}${closed ? ', closed' : ''}`;
};

/** Other protocols' first bytes, each as its client would send them. */
const GARBAGE = [
  { name: 'HTTP on 110', port: 'stls', bytes: 'GET / HTTP/1.1\r\nHost: x\r\n\r\n<script>alert(1)</script>\r\n' },
  { name: 'SMTP on 110', port: 'stls', bytes: 'EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n' },
  { name: 'binary on 110', port: 'stls', bytes: Buffer.from([0, 0xff, 0xfe, 0x00, 0x0d, 0x0a, 0xff, 0x00, 0x0d, 0x0a]).toString('latin1').repeat(3) },
  { name: 'TLS on 110', port: 'stls', bytes: 'tls' },
  { name: 'HTTP on 995', port: 'tls', bytes: 'GET / HTTP/1.1\r\nHost: x\r\n\r\n' },
] as const;
export const GARBAGE_KINDS: readonly string[] = GARBAGE.map((g) => g.name);

/** One of GARBAGE (the n-th, round-robin): `name: first reply line, closed`. */
const garbageProtocols: Attempt = async (target, source, n) => {
  const garbage = GARBAGE[n % GARBAGE.length]!;
  let socket: Socket;
  if (garbage.bytes === 'tls') {
    // A client configured for implicit TLS pointed at the STLS port: its ClientHello comes first.
    socket = tlsOver(netConnect({ host: target.host, port: target.stlsPort, localAddress: source }));
  } else {
    socket = garbage.port === 'stls' ? plain(target, source) : netConnect({ host: target.host, port: target.tlsPort, localAddress: source });
    socket.on('error', () => undefined);
    socket.once('connect', () => socket.write(Buffer.from(garbage.bytes, 'latin1')));
  }
  const { received, closed } = await collect(socket, 15_000);
  // The greeting (110) is not the answer: the last line is.
  const lines = received.split('\r\n').filter((l) => l !== '' && !l.startsWith('+OK popwarden') && !l.startsWith('+OK '));
  const reply = lines.length === 0 ? '' : `${lines.length} × ${firstLine(lines[lines.length - 1]!)}, `;
  return `${garbage.name}: ${reply}${closed ? 'closed' : 'still open'}`;
};

/** USER/PASS over implicit TLS; resolves with the reply to PASS. */
async function guess(target: AttackTarget, source: string, user: string, password: string): Promise<string> {
  const socket = secure(target, source);
  if ((await greeted(socket)) === undefined) return 'closed';
  socket.write(`USER ${user}\r\n`);
  if ((await greeted(socket)) === undefined) return 'closed';
  socket.write(`PASS ${password}\r\n`);
  const reply = await greeted(socket, 40_000);
  socket.destroy();
  return reply ?? 'closed';
}

/** Wrong passwords for many users (user00000, user00001, ...) from many addresses. */
const credentialStuffing: Attempt = (target, source, n) =>
  guess(target, source, `user${String(n).padStart(5, '0')}`, `stuffed-${n}`);

/** Wrong passwords, never the same twice, for one user from many addresses. */
const oneUserManyAddresses: Attempt = (target, source, n, options) =>
  guess(target, source, options.victim ?? 'alice', `guess-${n}`);

const LOOPING: Partial<Record<AttackKind, Attempt>> = {
  'connection-flood': connectionFlood,
  'tls-handshake-flood': tlsHandshakeFlood,
  'pipelined-flood': pipelinedFlood,
  'oversized-sasl': oversizedSasl,
  'garbage-protocols': garbageProtocols,
  'credential-stuffing': credentialStuffing,
  'one-user-many-addresses': oneUserManyAddresses,
};

/**
 * Slowloris: `concurrency` sockets at once, spread over the sources, each trickling one byte a
 * second and never finishing a line (110) or a ClientHello (995), held until the duration ends.
 * Outcome: whether popwarden closed each one before the attacker let go.
 */
async function slowloris(kind: 'slowloris-110' | 'slowloris-995', options: AttackOptions): Promise<Record<string, number>> {
  const { target, sources, concurrency, durationMs } = options;
  const port = kind === 'slowloris-110' ? target.stlsPort : target.tlsPort;
  const outcomes: Record<string, number> = {};
  const held = Array.from({ length: concurrency }, (_, i) => {
    const socket = netConnect({ host: target.host, port, localAddress: sources[i % sources.length]! });
    socket.on('error', () => undefined);
    // 995: the first bytes of a TLS record header, then one byte at a time.
    socket.once('connect', () => socket.write(kind === 'slowloris-995' ? Buffer.from([0x16, 0x03]) : 'US'));
    const trickle = setInterval(() => socket.write(kind === 'slowloris-995' ? Buffer.from([0x01]) : 'E'), 1_000);
    return collect(socket, durationMs).then(({ received, closed }) => {
      clearInterval(trickle);
      const refusal = received.split('\r\n').find((l) => l.startsWith('-ERR'));
      const label = closed ? `closed by popwarden${refusal === undefined ? '' : ` (${firstLine(refusal)})`}` : 'held to the end';
      outcomes[label] = (outcomes[label] ?? 0) + 1;
    });
  });
  await Promise.all(held);
  return outcomes;
}

/** Runs one attack to its end (duration or attempt budget) and reports the outcomes. */
export async function runAttack(kind: AttackKind, options: AttackOptions): Promise<AttackReport> {
  if (kind === 'slowloris-110' || kind === 'slowloris-995') {
    return { kind, attempts: options.concurrency, outcomes: await slowloris(kind, options) };
  }
  const attempt = LOOPING[kind]!;
  const deadline = Date.now() + options.durationMs;
  const budget = options.maxAttempts ?? Number.POSITIVE_INFINITY;
  const outcomes: Record<string, number> = {};
  let next = 0;
  await Promise.all(
    Array.from({ length: options.concurrency }, async () => {
      while (Date.now() < deadline && next < budget) {
        const n = next++;
        const label = await attempt(options.target, options.sources[n % options.sources.length]!, n, options).catch((error: Error) => `error: ${error.message}`);
        outcomes[label] = (outcomes[label] ?? 0) + 1;
      }
    }),
  );
  return { kind, attempts: next, outcomes };
}

/** `count` loopback source addresses from 127.`second`.x.y (x from 0, y from 1). */
export function loopbackSources(second: number, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `127.${second}.${Math.floor(i / 250)}.${(i % 250) + 1}`);
}

export interface LegitResult {
  /** When the session began (Date.now() ms), to match a slow login with popwarden's log. */
  readonly startedAt: number;
  /** From TCP connect to popwarden's greeting: the TCP and TLS handshakes; NaN if it never came. */
  readonly greetingMs: number;
  /** From TCP connect to the +OK to PASS: TLS handshake, greeting, USER, PASS. */
  readonly loginMs: number;
  /** Undefined when the session succeeded and the message matched byte for byte. */
  readonly failure?: string;
}

/**
 * The legitimate user: implicit TLS verified against the CA, USER/PASS, RETR of message 1
 * compared byte for byte with `expected`, QUIT.
 */
export async function legitimateFetch(
  target: AttackTarget,
  account: { user: string; pass: string },
  expected: Buffer,
  localAddress: string,
): Promise<LegitResult> {
  const startedAt = Date.now();
  const started = performance.now();
  let loginMs = Number.NaN;
  let greetingMs = Number.NaN;
  let conn: Awaited<ReturnType<typeof connectPop>> | undefined;
  try {
    conn = await connectPop({ host: target.host, port: target.tlsPort, tls: true, caFile: target.caFile, localAddress, timeoutMs: 40_000 });
    greetingMs = performance.now() - started;
    const reply = await conn.login(account.user, account.pass, 'user');
    loginMs = performance.now() - started;
    if (!reply.startsWith('+OK')) return { startedAt, greetingMs, loginMs, failure: `login: ${reply}` };
    const { status, body } = await conn.multi('RETR 1');
    if (!status.startsWith('+OK')) return { startedAt, greetingMs, loginMs, failure: `RETR: ${status}` };
    if (!body.equals(expected)) return { startedAt, greetingMs, loginMs, failure: `RETR: ${body.length} bytes differ from the ${expected.length} expected` };
    const bye = await conn.command('QUIT');
    if (!bye.startsWith('+OK')) return { startedAt, greetingMs, loginMs, failure: `QUIT: ${bye}` };
    return { startedAt, greetingMs, loginMs };
  } catch (error) {
    return { startedAt, greetingMs, loginMs: Number.isNaN(loginMs) ? performance.now() - started : loginMs, failure: (error as Error).message };
  } finally {
    conn?.close();
  }
}
