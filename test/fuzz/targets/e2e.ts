/**
 * End to end (issue 14.1 and 14.5): random byte and command streams from clients on many
 * loopback addresses to a real popwarden process (its command line, `src/cli.ts`, under
 * --unhandled-rejections=strict) in front of a real Dovecot. Each stream, cut into random pieces, is sent in clear,
 * after STLS, or after a real login (so the relay gets it), and ends with QUIT, a FIN or a reset;
 * popwarden must close the connection in time. Throughout, the process must stay up and log no
 * error; afterwards a legitimate client must still log in and read its mailbox.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { connect as connectTcp, type Socket } from 'node:net';
import { connect as connectTls, type ConnectionOptions } from 'node:tls';
import fc from 'fast-check';
import { startDovecot, type Dovecot } from '../../harness/dovecot.js';
import { sampleMaildrop } from '../../harness/maildrop.js';
import { testCertificate } from '../../harness/popwarden.js';
import { connectPop } from '../../harness/clients.js';
import { splitAt } from '../../harness/chunks.js';
import { randomBytes } from '../inputs.js';
import { defineTarget } from '../target.js';

const ROOT = resolve(import.meta.dirname, '../../..');
/** How long popwarden may take to close a connection whose client is done. */
const CLOSE_WITHIN_MS = 10_000;

let dovecot: Dovecot;
let popwarden: ChildProcess;
let dir: string;
let ports: { tls: number; stls: number };
/** Log lines that say something went wrong (level error or fatal, or anything that is not JSON). */
const problems: string[] = [];
/** How many times popwarden logged each message: what the streams reached. */
const messages = new Map<string, number>();
let rssAtStart = 0;
/** Waiting for popwarden's answers to SIGUSR2 (test/fuzz/heap-probe.mjs), in order. */
const heapProbes: ((bytes: number) => void)[] = [];

/** popwarden's resident memory in MiB, from /proc. */
function popwardenRssMiB(): number {
  const status = readFileSync(`/proc/${popwarden.pid}/status`, 'utf8');
  return Math.round(Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024);
}

function watchOutput(child: ChildProcess): Promise<{ tls: number; stls: number }> {
  return new Promise((resolvePorts, reject) => {
    const found: Partial<Record<'tls' | 'stls', number>> = {};
    let rest = '';
    const onLine = (line: string): void => {
      let entry: { level?: number; msg?: string; kind?: string; address?: string; reason?: string; heapProbe?: number };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        problems.push(line);
        return;
      }
      if ((entry.level ?? 0) >= 50) problems.push(line);
      if (entry.heapProbe !== undefined) heapProbes.shift()?.(entry.heapProbe);
      const counted = entry.msg === 'session closed' ? `closed: ${entry.reason}` : entry.msg;
      if (counted !== undefined) messages.set(counted, (messages.get(counted) ?? 0) + 1);
      if (entry.msg === 'listening' && (entry.kind === 'tls' || entry.kind === 'stls')) {
        found[entry.kind] = Number(entry.address?.split(':').at(-1));
        if (found.tls !== undefined && found.stls !== undefined) resolvePorts({ tls: found.tls, stls: found.stls });
      }
    };
    for (const stream of [child.stdout, child.stderr]) {
      stream?.on('data', (chunk: Buffer) => {
        const lines = (rest + chunk.toString('utf8')).split('\n');
        rest = lines.pop() ?? '';
        for (const line of lines) if (line.trim() !== '') onLine(line);
      });
    }
    child.once('exit', (code, signal) => reject(new Error(`popwarden exited (${signal ?? code}) before listening:\n${problems.join('\n')}`)));
  });
}

const latin1 = (text: string) => Buffer.from(text, 'latin1');
const b64 = (text: string) => Buffer.from(text, 'latin1').toString('base64');
const argument = fc.oneof(fc.constantFrom('1', '2', '0', '-1', '99', '4294967297', '', ' ', 'x', '\t1'), fc.string({ maxLength: 5 }));
const command = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(fc.mixedCase(fc.constantFrom('STAT', 'LIST', 'RETR', 'TOP', 'UIDL', 'DELE', 'RSET', 'NOOP', 'LAST', 'CAPA', 'STLS', 'USER', 'PASS', 'APOP', 'AUTH', 'XTND', 'QUIT')), fc.array(argument, { maxLength: 3 })).map(([verb, args]) => [verb, ...args].join(' ')) },
  { weight: 2, arbitrary: fc.constantFrom(`AUTH PLAIN ${b64('\0carol\0guess')}`, 'AUTH LOGIN', b64('carol'), '*', `AUTH PLAIN ${b64('bob\0carol\0x')}`, 'AUTH PLAIN =', 'USER carol', 'PASS x y', `USER ${'u'.repeat(300)}`) },
  { weight: 1, arbitrary: fc.constantFrom('GET / HTTP/1.1', 'EHLO x', '\x16\x03\x01\x02\x00\x01', 'A'.repeat(1200), '.', '') },
  { weight: 2, arbitrary: randomBytes(24).map((b) => b.toString('latin1')) },
);

interface Stream {
  readonly listener: 'tls' | 'stls';
  readonly preface: 'none' | 'stls' | 'login';
  readonly bytes: Buffer;
  readonly cuts: number[];
  readonly ending: 'quit' | 'fin' | 'reset';
  readonly source: number;
}

const stream: fc.Arbitrary<Stream> = fc.record({
  listener: fc.constantFrom('tls', 'stls'),
  preface: fc.constantFrom('none', 'stls', 'login', 'login'),
  bytes: fc.tuple(fc.array(command, { maxLength: 12 }), fc.constantFrom('\r\n', '\n', '\r\n', '\r')).map(([lines, eol]) => latin1(lines.map((l) => l + eol).join(''))),
  cuts: fc.array(fc.nat(), { maxLength: 6 }),
  ending: fc.constantFrom('quit', 'quit', 'fin', 'reset'),
  source: fc.integer({ min: 2, max: 250 }),
});

/** Resolves with the next line the server sends (CRLF removed), or undefined when it closes first. */
function nextLine(socket: Socket): Promise<string | undefined> {
  return new Promise((resolveLine) => {
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('latin1');
      const lf = text.indexOf('\n');
      if (lf === -1) return;
      socket.off('data', onData);
      socket.off('close', onClose);
      // What came after the line is not needed: the caller only waits for one reply at a time.
      resolveLine(text.slice(0, lf).replace(/\r$/, ''));
    };
    const onClose = (): void => {
      socket.off('data', onData);
      resolveLine(undefined);
    };
    socket.on('data', onData);
    socket.once('close', onClose);
  });
}

async function open(input: Stream): Promise<Socket> {
  const localAddress = `127.0.0.${input.source}`;
  const tls = input.listener === 'tls';
  const socket: Socket = await new Promise((resolveSocket, reject) => {
    const s = tls
      ? connectTls({ host: '127.0.0.1', port: ports.tls, localAddress, rejectUnauthorized: false } as ConnectionOptions, () => resolveSocket(s))
      : connectTcp({ host: '127.0.0.1', port: ports.stls, localAddress }, () => resolveSocket(s));
    s.once('error', reject);
  });
  socket.on('error', () => undefined);
  if ((await nextLine(socket)) === undefined || input.preface === 'none') return socket;
  let secured = socket;
  if (!tls) {
    socket.write('STLS\r\n');
    if (!(await nextLine(socket))?.startsWith('+OK')) return socket;
    secured = await new Promise<Socket>((resolveSocket, reject) => {
      const s = connectTls({ socket, rejectUnauthorized: false }, () => resolveSocket(s));
      s.once('error', reject);
    });
    secured.on('error', () => undefined);
  }
  if (input.preface === 'login') {
    const { bob } = sampleMaildrop();
    secured.write(`USER ${bob.user}\r\n`);
    await nextLine(secured);
    secured.write(`PASS ${bob.pass}\r\n`);
    const reply = await nextLine(secured);
    assert.ok(reply?.startsWith('+OK'), `bob's login failed: ${reply}`);
  }
  return secured;
}

function assertAlive(): void {
  assert.equal(popwarden.exitCode, null, `popwarden died (${popwarden.exitCode ?? popwarden.signalCode}):\n${problems.join('\n')}`);
  assert.deepEqual(problems, [], 'popwarden logged an error');
}

export default defineTarget({
  name: 'e2e',
  about: 'random client streams to a real popwarden process in front of Dovecot; it stays up',
  input: stream,
  defaultSeconds: 120,
  ciRuns: 40,
  maxInputMs: 15_000,
  async setUp() {
    dovecot = await startDovecot({ profile: 'all', authPenalty: false, authFailureDelay: '0' });
    dir = mkdtempSync('/tmp/popwarden-fuzz-e2e-');
    const cert = testCertificate();
    const config = join(dir, 'popwarden.yaml');
    writeFileSync(config, [
      'listen_tls: ["127.0.0.1:0"]',
      'listen_stls: ["127.0.0.1:0"]',
      `backend: "127.0.0.1:${dovecot.port}"`,
      'backend_tls: "off"',
      `cert: "${cert.certFile}"`,
      `key: "${cert.keyFile}"`,
      `state_dir: "${join(dir, 'state')}"`,
      'metrics_listen: "off"',
      'auth_failure_delay: 0',
      'log_level: debug',
      'limits:',
      '  max_new_connections_per_ip: 0',
      '  max_new_connections_per_ip_per_minute: 0',
      '  max_protocol_errors_per_ip_per_hour: 0',
      '  max_handshakes_per_ip: 0',
      '  max_sessions_per_ip: 0',
      '',
    ].join('\n'));
    // The command line entry from source (no build step to go stale), as `node dist/cli.js` runs it.
    popwarden = spawn(process.execPath, ['--import', 'tsx', '--unhandled-rejections=strict', '--expose-gc', '--import', join(import.meta.dirname, '../heap-probe.mjs'), join(ROOT, 'src/cli.ts'), '--config', config], {
      cwd: ROOT,
      env: { PATH: process.env['PATH'] ?? '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // If the worker dies of a failure, popwarden must not outlive it.
    process.once('exit', () => popwarden.kill('SIGKILL'));
    ports = await watchOutput(popwarden);
    rssAtStart = popwardenRssMiB();
  },
  async tearDown() {
    if (popwarden.exitCode === null) {
      const exited = new Promise((r) => popwarden.once('exit', r));
      popwarden.kill('SIGTERM');
      await exited;
    }
    await dovecot.stop();
    rmSync(dir, { recursive: true, force: true });
  },
  async check(input) {
    assertAlive();
    let socket: Socket;
    try {
      socket = await open(input);
    } catch (error) {
      // A refused connection or handshake would be popwarden's fault only if it is down.
      assertAlive();
      throw error;
    }
    const closed = new Promise<void>((resolveClosed) => (socket.closed ? resolveClosed() : socket.once('close', () => resolveClosed())));
    socket.resume();
    for (const piece of splitAt(input.bytes, input.cuts)) if (piece.length > 0) socket.write(piece);
    if (input.ending === 'reset') socket.destroy();
    else if (input.ending === 'quit') socket.end('QUIT\r\n');
    else socket.end();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolveLate) => (timer = setTimeout(() => resolveLate('late'), CLOSE_WITHIN_MS)));
    const result = await Promise.race([closed, late]);
    clearTimeout(timer);
    socket.destroy();
    assert.notEqual(result, 'late', `popwarden did not close the connection within ${CLOSE_WITHIN_MS} ms`);
    assertAlive();
  },
  async afterRun() {
    // A legitimate user still gets in, with a real login to Dovecot and a mailbox listing.
    const { alice } = sampleMaildrop();
    const client = await connectPop({ host: '127.0.0.1', port: ports.tls, tls: true, caFile: testCertificate().caFile });
    try {
      assert.match(await client.login(alice.user, alice.pass, 'user'), /^\+OK/);
      assert.match(await client.command('STAT'), /^\+OK 3 /);
      assert.match(await client.command('QUIT'), /^\+OK/);
    } finally {
      client.close();
    }
    assertAlive();
    assert.ok((messages.get('session opened') ?? 0) > 0, 'no session was logged');
  },
  measureServerHeapMiB() {
    return new Promise((resolveHeap) => {
      heapProbes.push((bytes) => resolveHeap(Math.round((bytes / 1048576) * 10) / 10));
      popwarden.kill('SIGUSR2');
    });
  },
  notes() {
    const count = (msg: string) => messages.get(msg) ?? 0;
    const closes = [...messages].filter(([m]) => m.startsWith('closed: ')).map(([m, n]) => `${m.slice(8)} ${n}`).join(', ');
    return `popwarden: ${count('session opened')} sessions, ${count('login attempt')} login attempts, closed by ${closes}; RSS ${rssAtStart} MiB at start, ${popwardenRssMiB()} MiB at the end`;
  },
});
