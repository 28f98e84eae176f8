/**
 * Relay benchmark: how fast popwarden streams a 50 MB RETR over implicit TLS, as a ratio against
 * stunnel (a C TLS terminator with no POP3 awareness) in front of the same backend in the same run,
 * and how much popwarden's RSS grows while a slow client reads that message.
 *
 *   npm run build && node --import tsx bench/relay.ts [--runs 5] [--slow-rate-mbps 8]
 *
 * Needs stunnel4 (apt-get install stunnel4) and openssl. Everything binds to 127.0.0.1.
 */
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { parseArgs } from 'node:util';
import { TerminatorScanner } from '../src/net/multiline.js';
import { startFakeBackend, legacyScript } from '../test/harness/fake-backend.js';
import { benchEnvironment, mb, median, rssBytes, startPopwardenProcess, startStunnel } from './lib.js';

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

const env = benchEnvironment();
const ca = env.ca;

/** Logs in, sends RETR 1 and resolves with the body size once the terminator has arrived. */
async function fetchOnce(
  port: number,
  readRateBytesPerSecond?: number,
  options: { headOnly?: boolean } = {},
): Promise<{ seconds: number; bytes: number }> {
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
  if (options.headOnly === true) {
    socket.write('STAT\r\n');
    await nextLine();
    socket.destroy();
    return { seconds: 0, bytes: 0 };
  }
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

const backend = await startFakeBackend(legacyScript({ accounts: { bench: { pass: 'benchpass', messages: [message()] } } }));
const popwarden = await startPopwardenProcess(env, backend.port);
const stunnel = await startStunnel(env, backend.port);

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

// RSS while a slow client reads the whole message, on a fresh popwarden: RSS never shrinks, so
// the fast runs above would hide any growth. The baseline is taken after one TLS session, so
// what is measured is the relay, not first-use allocations.
const fresh = await startPopwardenProcess(env, backend.port);
await fetchOnce(fresh.port, undefined, { headOnly: true });
const baseline = rssBytes(fresh.pid);
let peak = baseline;
const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(fresh.pid))), 50);
const slow = await fetchOnce(fresh.port, SLOW_RATE);
// A second slow fetch separates one-time warm-up (heap, buffer pools, TLS) from growth per
// message: a relay that buffered would grow again by the size of what it held.
const peakAfterFirst = peak;
await fetchOnce(fresh.port, SLOW_RATE);
clearInterval(sampler);

console.log(`| measure | popwarden | stunnel (same run) | ratio popwarden/stunnel |`);
console.log(`|---|---|---|---|`);
console.log(`| RETR 50 MB over TLS 1.3, median of ${RUNS} (MB/s) | ${mb(median(popwardenRates))} | ${mb(median(stunnelRates))} | ${(median(popwardenRates) / median(stunnelRates)).toFixed(2)} |`);
console.log('');
console.log(
  `slow reader at ${mb(SLOW_RATE)} MB/s: ${mb(slow.bytes)} MB in ${slow.seconds.toFixed(1)} s on a fresh popwarden; ` +
    `RSS ${mb(baseline)} MB before, peak ${mb(peakAfterFirst)} MB during the first fetch (+${mb(peakAfterFirst - baseline)} MB), ` +
    `peak ${mb(peak)} MB after a second one (+${mb(peak - peakAfterFirst)} MB more)`,
);
await backend.stop();
process.exit(0);
