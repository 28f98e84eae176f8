/**
 * Relay benchmark: how fast popwarden streams a 50 MB RETR over implicit TLS, as a ratio against
 * stunnel (a C TLS terminator with no POP3 awareness) in front of the same backend in the same run,
 * and how much popwarden's RSS grows while a slow client reads that message.
 *
 *   npm run build && node --import tsx bench/relay.ts [--runs 5] [--slow-rate-mbps 8]
 *
 * Needs stunnel4 (apt-get install stunnel4) and openssl. Everything binds to 127.0.0.1.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { parseArgs } from 'node:util';
import { TerminatorScanner } from '../src/net/multiline.js';
import { startFakeBackend, legacyScript } from '../test/harness/fake-backend.js';
import { freePort, waitForPort } from '../test/harness/ports.js';

const { values } = parseArgs({
  options: { runs: { type: 'string', default: '5' }, 'slow-rate-mbps': { type: 'string', default: '8' } },
});
const RUNS = Number(values.runs);
const SLOW_RATE = Number(values['slow-rate-mbps']) * 1024 * 1024;
const MESSAGE_BYTES = 50 * 1024 * 1024;

function message(): Buffer {
  const line = Buffer.from(`${'x'.repeat(76)}\r\n`);
  const head = Buffer.from('From: bench@example.test\r\nSubject: 50 MB\r\n\r\n');
  return Buffer.concat([head, Buffer.alloc(MESSAGE_BYTES - head.length - (MESSAGE_BYTES % line.length)).fill(line)]);
}

const dir = mkdtempSync(join(tmpdir(), 'popwarden-bench-'));
const certFile = join(dir, 'cert.pem');
const keyFile = join(dir, 'key.pem');
execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
  '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', keyFile, '-out', certFile], { stdio: 'ignore' });
const ca = readFileSync(certFile);

const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

async function startPopwarden(backendPort: number): Promise<{ port: number; pid: number }> {
  const port = await freePort();
  const child = spawn(process.execPath, ['dist/cli.js', '--listen-tls', `127.0.0.1:${port}`, '--listen-stls', `127.0.0.1:${await freePort()}`,
    '--backend', `127.0.0.1:${backendPort}`, '--cert', certFile, '--key', keyFile, '--auth-failure-delay', '0s',
    '--log-level', 'warn', '--state-dir', dir], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  await waitForPort('127.0.0.1', port);
  return { port, pid: child.pid! };
}

async function startStunnel(backendPort: number): Promise<{ port: number }> {
  const port = await freePort();
  const conf = join(dir, 'stunnel.conf');
  writeFileSync(conf, `foreground = yes\npid =\n[pop3s]\naccept = 127.0.0.1:${port}\nconnect = 127.0.0.1:${backendPort}\ncert = ${certFile}\nkey = ${keyFile}\n`);
  const child = spawn('stunnel4', [conf], { stdio: 'ignore' });
  children.push(child);
  await waitForPort('127.0.0.1', port);
  return { port };
}

/** Logs in, sends RETR 1 and resolves with the body size once the terminator has arrived. */
async function fetchOnce(port: number, readRateBytesPerSecond?: number): Promise<{ seconds: number; bytes: number }> {
  const socket: TLSSocket = tlsConnect({ host: '127.0.0.1', port, ca, servername: 'localhost' });
  await new Promise((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
  let pending = '';
  const nextLine = (): Promise<string> =>
    new Promise((resolve) => {
      const onData = (chunk: Buffer): void => {
        pending += chunk.toString('latin1');
        const at = pending.indexOf('\r\n');
        if (at === -1) return;
        socket.off('data', onData);
        const line = pending.slice(0, at);
        pending = pending.slice(at + 2);
        resolve(line);
      };
      socket.on('data', onData);
    });
  await nextLine();
  socket.write('USER bench\r\n');
  await nextLine();
  socket.write('PASS benchpass\r\n');
  const loggedIn = await nextLine();
  if (!loggedIn.startsWith('+OK')) throw new Error(`login failed: ${loggedIn}`);
  const started = process.hrtime.bigint();
  socket.write('RETR 1\r\n');
  await nextLine();
  const scanner = new TerminatorScanner();
  let bytes = 0;
  await new Promise<void>((resolve, reject) => {
    const windowStart = Date.now();
    const onData = (chunk: Buffer): void => {
      bytes += chunk.length;
      if (scanner.feed(chunk) !== -1) {
        socket.off('data', onData);
        resolve();
        return;
      }
      if (readRateBytesPerSecond !== undefined) {
        const ahead = bytes / readRateBytesPerSecond - (Date.now() - windowStart) / 1000;
        if (ahead > 0) {
          socket.pause();
          setTimeout(() => socket.resume(), ahead * 1000);
        }
      }
    };
    socket.on('data', onData);
    if (pending.length > 0) onData(Buffer.from(pending, 'latin1'));
    socket.once('close', () => reject(new Error('closed before the end of the message')));
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  socket.destroy();
  return { seconds, bytes };
}

function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const mb = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1);

const backend = await startFakeBackend(legacyScript({ accounts: { bench: { pass: 'benchpass', messages: [message()] } } }));
const popwarden = await startPopwarden(backend.port);
const stunnel = await startStunnel(backend.port);

// Warm both paths once, then alternate so machine noise hits both alike.
await fetchOnce(popwarden.port);
await fetchOnce(stunnel.port);
const popwardenRates: number[] = [];
const stunnelRates: number[] = [];
for (let run = 0; run < RUNS; run++) {
  const p = await fetchOnce(popwarden.port);
  const s = await fetchOnce(stunnel.port);
  popwardenRates.push(p.bytes / p.seconds);
  stunnelRates.push(s.bytes / s.seconds);
}

// RSS while a slow client reads the whole message through popwarden.
const baseline = rssBytes(popwarden.pid);
let peak = baseline;
const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(popwarden.pid))), 50);
const slow = await fetchOnce(popwarden.port, SLOW_RATE);
clearInterval(sampler);

console.log(`| measure | popwarden | stunnel (same run) | ratio popwarden/stunnel |`);
console.log(`|---|---|---|---|`);
console.log(`| RETR 50 MB over TLS 1.3, median of ${RUNS} (MB/s) | ${mb(median(popwardenRates))} | ${mb(median(stunnelRates))} | ${(median(popwardenRates) / median(stunnelRates)).toFixed(2)} |`);
console.log('');
console.log(`slow reader at ${mb(SLOW_RATE)} MB/s: ${mb(slow.bytes)} MB in ${slow.seconds.toFixed(1)} s; popwarden RSS before ${mb(baseline)} MB, peak ${mb(peak)} MB, growth ${mb(peak - baseline)} MB`);
await backend.stop();
process.exit(0);
