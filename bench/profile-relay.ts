/**
 * Profiling workloads for the relay path (issue 10), against popwarden as its own process:
 *
 *   fetch  fetchmail-like sessions through popwarden to a real Dovecot: TLS, USER/PASS, STAT,
 *          LIST, UIDL, RETR of 200 small messages, QUIT; one at a time. CPU ms and wall time
 *          per session, read from /proc.
 *   idle   N idle logged-in TLS sessions (a minimal in-process backend, since Dovecot's default
 *          process limits stop at 100); KiB of RSS per session over the empty process.
 *   noop   NOOP round trips on one logged-in session: p50/p99 and CPU µs per NOOP.
 *   retr   RETR of one big message (--mib, 50 by default) --count times on one session, from a
 *          minimal in-process backend: MB/s and popwarden's CPU-seconds per GB.
 *   login  full logins (TLS handshake, greeting, USER, PASS, QUIT) from --concurrency workers:
 *          popwarden's CPU µs per login.
 *   quit   N logged-in TLS sessions (the minimal backend) that all QUIT at once, as a soak's
 *          clients do when its load stops: popwarden's CPU µs per closed session (/proc), the
 *          event loop's longest stall meanwhile (/metrics), and when the last +OK came;
 *          --strace FILE writes `strace -c -f` of the wave alone (slower: CPU not comparable).
 *
 *   npm run build && node --import tsx bench/profile-relay.ts fetch [--sessions 20] [--cpu-prof DIR]
 *   node --import tsx bench/profile-relay.ts idle [--sessions 1000] [--settle SECONDS] [--heap-snapshot DIR]
 *   node --import tsx bench/profile-relay.ts noop [--count 2000]
 *   node --import tsx bench/profile-relay.ts retr [--count 5] [--mib 50]
 *   node --import tsx bench/profile-relay.ts login [--count 2000] [--concurrency 4]
 *   node --import tsx bench/profile-relay.ts quit [--sessions 1000] [--log-level info] [--cpu-prof DIR]
 *
 * --cpu-prof DIR starts popwarden with `node --cpu-prof` (written at its exit, after the
 * workload); --heap-snapshot DIR writes a snapshot of popwarden with the sessions open;
 * --node-flag F (repeatable) passes F to popwarden's node (e.g. --perf-basic-prof for `perf`);
 * --cli PATH runs another build (a copy of dist/ from an earlier commit, for A/B runs).
 */
import { spawn, execFileSync } from 'node:child_process';
import { createServer, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort, waitForPort } from '../test/harness/ports.js';
import { startDovecot } from '../test/harness/dovecot.js';
import { sampleMaildrop, writeMaildir, type SampleMessage } from '../test/harness/maildrop.js';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    sessions: { type: 'string' },
    count: { type: 'string' },
    mib: { type: 'string', default: '50' },
    concurrency: { type: 'string', default: '4' },
    messages: { type: 'string', default: '200' },
    'cpu-prof': { type: 'string' },
    'heap-snapshot': { type: 'string' },
    'node-flag': { type: 'string', multiple: true, default: [] },
    strace: { type: 'string' },
    settle: { type: 'string', default: '2' },
    'log-level': { type: 'string', default: 'warn' },
    cli: { type: 'string', default: 'dist/cli.js' },
  },
});
const mode = positionals[0] ?? 'fetch';

const dir = mkdtempSync(join(tmpdir(), 'popwarden-profile-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
const certFile = join(dir, 'cert.pem');
const keyFile = join(dir, 'key.pem');
// ECDSA P-256, as in the measurements.
execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
  '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', keyFile, '-out', certFile], { stdio: 'ignore' });
const ca = readFileSync(certFile);

/** CPU time of a process in ms, from /proc: user + system, or one of them. */
function cpuMs(pid: number, part: 'all' | 'user' | 'system' = 'all'): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const user = Number(fields[11]);
  const system = Number(fields[12]);
  const ticks = part === 'user' ? user : part === 'system' ? system : user + system;
  return (ticks * 1000) / 100; // USER_HZ is 100 on Linux
}
function rssKiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
}
const percentile = (xs: readonly number[], p: number): number =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;

/**
 * popwarden from dist/ on a free implicit-TLS port, with its shebang's node flags; metrics on (as
 * deployed), logs at --log-level (warn, as in `npm run bench`) to /dev/null, or to stdout with PW_LOG=1.
 */
async function startPopwarden(backendPort: number): Promise<{ port: number; pid: number; metricsPort: number; stop: () => Promise<void> }> {
  const port = await freePort();
  const metricsPort = await freePort();
  // The flags an installed popwarden runs with: those of its shebang (`env -S node FLAGS`).
  const shebang = /^#!.*\bnode\b(.*)$/m.exec(readFileSync(values.cli, 'utf8').split('\n', 1)[0]!)?.[1] ?? '';
  const nodeFlags: string[] = [...shebang.trim().split(/\s+/).filter(Boolean), ...values['node-flag']];
  if (values['cpu-prof'] !== undefined) nodeFlags.push('--cpu-prof', `--cpu-prof-dir=${values['cpu-prof']}`);
  if (values['heap-snapshot'] !== undefined) nodeFlags.push('--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${values['heap-snapshot']}`);
  const child = spawn(process.execPath, [...nodeFlags, values.cli, '--listen-tls', `127.0.0.1:${port}`,
    '--listen-stls', `127.0.0.1:${await freePort()}`, '--backend', `127.0.0.1:${backendPort}`, '--cert', certFile,
    '--key', keyFile, '--auth-failure-delay', '0s', '--state-dir', dir, '--metrics-listen', `127.0.0.1:${metricsPort}`,
    '--backend-probe-interval', '0s', '--allow-plaintext-backend-auth', '--log-level', values['log-level'], '--timeouts-idle', '1h', '--timeouts-backend-idle', '1h',
    '--limits-max-new-connections-per-ip', '0', '--limits-max-new-connections-per-ip-per-minute', '0', '--limits-max-sessions-per-ip', '0', '--limits-max-handshakes-per-ip', '0',
    // One user from one address opens up to 50 sessions at once, and a login in flight holds a
    // place in each failed-login counter: room for all of them.
    '--rate-limit-user-ip-max-failures', '1000', '--rate-limit-ip-max-failures', '1000', '--rate-limit-user-max-failures', '1000'],
  { stdio: ['ignore', process.env.PW_LOG ? 'inherit' : 'ignore', 'inherit'] });
  process.on('exit', () => child.kill('SIGKILL'));
  await waitForPort('127.0.0.1', port);
  console.error(`popwarden pid ${child.pid}`);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    port,
    pid: child.pid!,
    metricsPort,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

const TERMINATOR = Buffer.from('\r\n.\r\n', 'latin1');

/** A logged-in TLS session driven one command at a time. */
class Client {
  #pending: Buffer = Buffer.alloc(0);
  #waiter: (() => void) | undefined;
  private constructor(readonly socket: TLSSocket) {
    socket.on('data', this.#onData);
  }

  readonly #onData = (chunk: Buffer): void => {
    this.#pending = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    this.#waiter?.();
  };

  static async open(port: number, user: string, pass: string): Promise<Client> {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca, servername: 'localhost' });
    await new Promise((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
    const client = new Client(socket);
    await client.reply(false);
    await client.command(`USER ${user}`);
    const loggedIn = await client.command(`PASS ${pass}`);
    if (!loggedIn.startsWith('+OK')) throw new Error(`login failed: ${loggedIn}`);
    return client;
  }

  /**
   * Sends RETR and discards its reply as it arrives, keeping only the last four octets to spot
   * the terminator (a big body must not be gathered: that would measure this client). Returns
   * the octets received.
   */
  async retrDiscarding(n: number): Promise<number> {
    this.socket.write(`RETR ${n}\r\n`);
    let received = 0;
    let tail = Buffer.alloc(0);
    await new Promise<void>((resolve) => {
      const onData = (chunk: Buffer): void => {
        received += chunk.length;
        tail = Buffer.concat([tail, chunk.subarray(-5)]).subarray(-5);
        if (tail.equals(TERMINATOR)) {
          this.socket.off('data', onData);
          this.socket.on('data', this.#onData);
          resolve();
        }
      };
      this.socket.off('data', this.#onData);
      this.socket.on('data', onData);
    });
    return received;
  }

  async command(line: string, multiline = false): Promise<string> {
    this.socket.write(`${line}\r\n`);
    return this.reply(multiline);
  }

  /** The next reply; for a multi-line one, up to its terminator. */
  async reply(multiline: boolean): Promise<string> {
    for (;;) {
      const lineEnd = this.#pending.indexOf('\r\n');
      if (lineEnd !== -1) {
        const status = this.#pending.subarray(0, lineEnd).toString('latin1');
        let end = lineEnd + 2;
        if (multiline && status.startsWith('+OK')) {
          const terminator = this.#pending.indexOf('\r\n.\r\n', lineEnd);
          end = terminator === -1 ? -1 : terminator + 5;
        }
        if (end !== -1) {
          this.#pending = this.#pending.subarray(end);
          return status;
        }
      }
      await new Promise<void>((resolve) => (this.#waiter = resolve));
    }
  }
}

function smallMessages(user: string, count: number): SampleMessage[] {
  return Array.from({ length: count }, (_, i): SampleMessage => {
    const n = i + 2;
    const bytes = Buffer.from(`From: a@example.test\r\nTo: ${user}@example.test\r\nSubject: small ${n}\r\n\r\n${'a short line of text\r\n'.repeat(10 + (i % 40))}`);
    return { user, n, bytes, sha256: '', messageId: '', uidl: `${1704187000 + n}.M${n}P7.profile` };
  });
}

async function fetchWorkload(): Promise<void> {
  const sessions = Number(values.sessions ?? '20');
  const { bob } = sampleMaildrop();
  const dovecot = await startDovecot({ profile: 'all' });
  writeMaildir(join(dovecot.dir, 'mail', bob.user), { ...bob, messages: smallMessages(bob.user, Number(values.messages) - 1) }, { chown: true });
  const popwarden = await startPopwarden(dovecot.port);
  const session = async (): Promise<void> => {
    const client = await Client.open(popwarden.port, bob.user, bob.pass);
    const stat = await client.command('STAT');
    const count = Number(stat.split(' ')[1]);
    await client.command('LIST', true);
    await client.command('UIDL', true);
    for (let n = 1; n <= count; n++) await client.command(`RETR ${n}`, true);
    await client.command('QUIT');
    client.socket.destroy();
  };
  await session(); // warm-up
  const cpuBefore = cpuMs(popwarden.pid);
  const systemBefore = cpuMs(popwarden.pid, 'system');
  const started = performance.now();
  for (let i = 0; i < sessions; i++) await session();
  const wall = (performance.now() - started) / sessions;
  const cpu = (cpuMs(popwarden.pid) - cpuBefore) / sessions;
  const system = (cpuMs(popwarden.pid, 'system') - systemBefore) / sessions;
  console.log(`fetch: ${sessions} sessions of ${values.messages} messages: ${(wall / 1000).toFixed(3)} s/session, ` +
    `popwarden CPU ${cpu.toFixed(1)} ms/session (system ${system.toFixed(1)})`);
  await popwarden.stop();
  await dovecot.stop();
}

/** A backend that accepts any USER/PASS and answers NOOP: enough for idle sessions. */
async function minimalBackend(bigBody?: Buffer): Promise<number> {
  const server = createServer((socket: Socket) => {
    socket.setNoDelay(true);
    socket.on('error', () => undefined);
    socket.write('+OK minimal backend\r\n');
    let pending = '';
    socket.on('data', (chunk: Buffer) => {
      pending += chunk.toString('latin1');
      let at: number;
      while ((at = pending.indexOf('\r\n')) !== -1) {
        const verb = pending.slice(0, at).split(' ')[0]!.toUpperCase();
        pending = pending.slice(at + 2);
        if (verb === 'CAPA') socket.write('+OK\r\nUSER\r\n.\r\n');
        else if (verb === 'RETR' && bigBody !== undefined) {
          socket.write(`+OK ${bigBody.length} octets\r\n`);
          socket.write(bigBody);
        }
        else if (verb === 'QUIT') socket.end('+OK bye\r\n');
        else socket.write('+OK\r\n');
      }
    });
  });
  server.maxConnections = 20_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as { port: number }).port;
}

async function idleWorkload(): Promise<void> {
  const sessions = Number(values.sessions ?? '1000');
  const popwarden = await startPopwarden(await minimalBackend());
  // One session opened and closed first, so the empty baseline has every module loaded.
  (await Client.open(popwarden.port, 'u', 'p')).socket.destroy();
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const before = rssKiB(popwarden.pid);
  const clients: Client[] = [];
  for (let i = 0; i < sessions; i += 50) {
    clients.push(...(await Promise.all(Array.from({ length: Math.min(50, sessions - i) }, () => Client.open(popwarden.port, 'u', 'p')))));
  }
  const settleSeconds = Number(values.settle);
  for (let waited = 0; waited < settleSeconds; waited += 2) {
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const after = rssKiB(popwarden.pid);
    console.log(`idle: ${sessions} logged-in TLS sessions, after ${waited + 2} s: RSS ${before} -> ${after} KiB, ${((after - before) / sessions).toFixed(1)} KiB/session`);
  }
  if (values['heap-snapshot'] !== undefined) {
    const snapshotDir = values['heap-snapshot'];
    const existing = new Set(readdirSync(snapshotDir));
    process.kill(popwarden.pid, 'SIGUSR2');
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      const fresh = readdirSync(snapshotDir).filter((f) => !existing.has(f) && f.endsWith('.heapsnapshot'));
      if (fresh.length > 0) {
        console.log(`heap snapshot: ${join(snapshotDir, fresh[0]!)}`);
        break;
      }
    }
  }
  for (const client of clients) client.socket.destroy();
  await popwarden.stop();
}

async function noopWorkload(): Promise<void> {
  const count = Number(values.count ?? '2000');
  const popwarden = await startPopwarden(await minimalBackend());
  const client = await Client.open(popwarden.port, 'u', 'p');
  for (let i = 0; i < 200; i++) await client.command('NOOP');
  const cpuBefore = cpuMs(popwarden.pid);
  const rtts: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    await client.command('NOOP');
    rtts.push((performance.now() - started) * 1000);
  }
  const cpu = ((cpuMs(popwarden.pid) - cpuBefore) * 1000) / count;
  console.log(`noop: ${count} round trips: p50 ${percentile(rtts, 50).toFixed(0)} µs, p99 ${percentile(rtts, 99).toFixed(0)} µs, popwarden CPU ${cpu.toFixed(0)} µs/NOOP`);
  client.socket.destroy();
  await popwarden.stop();
}

/** A body of `mib` MiB: 76-octet lines of text, then the terminator. */
function bigBody(mib: number): Buffer {
  const lineText = Buffer.from(`${'x'.repeat(74)}\r\n`, 'latin1');
  const lines = Math.ceil((mib * 1024 * 1024) / lineText.length);
  const body = Buffer.alloc(lines * lineText.length + 3);
  for (let i = 0; i < lines; i++) lineText.copy(body, i * lineText.length);
  body.write('.\r\n', lines * lineText.length, 'latin1');
  return body;
}

async function retrWorkload(): Promise<void> {
  const count = Number(values.count ?? '5');
  const body = bigBody(Number(values.mib));
  const popwarden = await startPopwarden(await minimalBackend(body));
  const client = await Client.open(popwarden.port, 'u', 'p');
  await client.retrDiscarding(1); // warm-up
  const cpuBefore = cpuMs(popwarden.pid);
  const systemBefore = cpuMs(popwarden.pid, 'system');
  const started = performance.now();
  for (let i = 0; i < count; i++) await client.retrDiscarding(1);
  const seconds = (performance.now() - started) / 1000;
  const gb = (count * body.length) / 1e9;
  const cpu = (cpuMs(popwarden.pid) - cpuBefore) / 1000;
  const system = (cpuMs(popwarden.pid, 'system') - systemBefore) / 1000;
  console.log(`retr: ${count} x ${values.mib} MiB: ${((gb * 1000) / seconds).toFixed(0)} MB/s, ` +
    `popwarden CPU ${(cpu / gb).toFixed(2)} s/GB (system ${(system / gb).toFixed(2)})`);
  client.socket.destroy();
  await popwarden.stop();
}

async function loginWorkload(): Promise<void> {
  const count = Number(values.count ?? '2000');
  const concurrency = Number(values.concurrency);
  const popwarden = await startPopwarden(await minimalBackend());
  const login = async (): Promise<void> => {
    const client = await Client.open(popwarden.port, 'u', 'p');
    await client.command('QUIT');
    client.socket.destroy();
  };
  for (let i = 0; i < 50; i++) await login(); // warm-up
  let left = count;
  const worker = async (): Promise<void> => {
    while (left-- > 0) await login();
  };
  const cpuBefore = cpuMs(popwarden.pid);
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - started) / 1000;
  const cpu = ((cpuMs(popwarden.pid) - cpuBefore) * 1000) / count;
  console.log(`login: ${count} logins from ${concurrency} workers: ${(count / seconds).toFixed(0)}/s, popwarden CPU ${cpu.toFixed(0)} µs/login`);
  await popwarden.stop();
}

/** The longest event-loop stall since the last scrape, in ms (prom-client resets it at every scrape). */
async function loopStallMs(metricsPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  return Number(/^nodejs_eventloop_lag_max_seconds (\S+)$/m.exec(text)?.[1] ?? NaN) * 1000;
}

/** `strace -c -f` on `pid`, writing its table to `file` once stopped; resolves once attached. */
async function straceAttached(pid: number, file: string): Promise<{ stop(): Promise<void> }> {
  const strace = spawn('strace', ['-c', '-f', '-o', file, '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let said = '';
  await new Promise<void>((resolve) => strace.stderr.on('data', (chunk: Buffer) => ((said += chunk.toString()), /attached/.test(said) && resolve())));
  const exited = new Promise((resolve) => strace.once('exit', resolve));
  return {
    async stop() {
      strace.kill('SIGINT');
      await exited;
    },
  };
}

async function quitWorkload(): Promise<void> {
  const sessions = Number(values.sessions ?? '1000');
  const popwarden = await startPopwarden(await minimalBackend());
  // The close path runs before it is measured, so its code is compiled.
  for (let i = 0; i < 50; i++) {
    const warm = await Client.open(popwarden.port, 'u', 'p');
    await warm.command('QUIT');
    warm.socket.destroy();
  }
  const clients: Client[] = [];
  for (let i = 0; i < sessions; i += 50) {
    clients.push(...(await Promise.all(Array.from({ length: Math.min(50, sessions - i) }, () => Client.open(popwarden.port, 'u', 'p')))));
  }
  // A pause that is the subject: the logins' work (and its GC) is over before the wave.
  await new Promise((resolve) => setTimeout(resolve, Number(values.settle) * 1000));
  await loopStallMs(popwarden.metricsPort);
  const traced = values.strace === undefined ? undefined : await straceAttached(popwarden.pid, values.strace);
  const cpuBefore = cpuMs(popwarden.pid);
  const systemBefore = cpuMs(popwarden.pid, 'system');
  const started = performance.now();
  // CLOCK_MONOTONIC in µs, the clock of a .cpuprofile's sample times: the wave's window in it.
  const waveFrom = process.hrtime.bigint() / 1000n;
  const closed = clients.map((client) => new Promise((resolve) => client.socket.once('close', resolve)));
  const answered = await Promise.all(clients.map((client) => client.command('QUIT')));
  const lastReplyMs = performance.now() - started;
  await Promise.all(closed);
  const closedMs = performance.now() - started;
  // popwarden's side of each close (its backend links, the TLS teardown) ends after the client's.
  await new Promise((resolve) => setTimeout(resolve, 2_000));
  const cpu = cpuMs(popwarden.pid) - cpuBefore;
  const system = cpuMs(popwarden.pid, 'system') - systemBefore;
  const waveTo = process.hrtime.bigint() / 1000n;
  await traced?.stop();
  const stall = await loopStallMs(popwarden.metricsPort);
  const bye = answered.filter((reply) => reply.startsWith('+OK')).length;
  console.log(`quit: ${sessions} logged-in TLS sessions QUIT at once (${bye} +OK): last +OK after ${lastReplyMs.toFixed(0)} ms, ` +
    `all closed after ${closedMs.toFixed(0)} ms; popwarden CPU ${cpu.toFixed(0)} ms (system ${system.toFixed(0)}), ${((cpu * 1000) / sessions).toFixed(0)} µs per session; ` +
    `longest event-loop stall ${stall.toFixed(0)} ms`);
  if (values['cpu-prof'] !== undefined) console.log(`the wave in the profile: node --import tsx bench/profile-summary.ts FILE --from ${waveFrom} --to ${waveTo}`);
  await popwarden.stop();
}

switch (mode) {
  case 'fetch':
    await fetchWorkload();
    break;
  case 'idle':
    await idleWorkload();
    break;
  case 'noop':
    await noopWorkload();
    break;
  case 'retr':
    await retrWorkload();
    break;
  case 'login':
    await loginWorkload();
    break;
  case 'quit':
    await quitWorkload();
    break;
  default:
    throw new Error(`unknown workload ${mode}: fetch, idle, noop, retr, login or quit`);
}
process.exit(0);
