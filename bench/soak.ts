/**
 * Soak benchmark (SECURITY-TESTS X-08): many complete mail sessions (TLS, USER/PASS, UIDL,
 * RETR, QUIT) from 20 loopback addresses, through popwarden and, in the same run, through
 * stunnel in front of the same backend. Reports sessions per second as a ratio, session latency,
 * and whether popwarden's memory and file descriptors return to their baseline afterwards.
 *
 *   npm run build && node --import tsx bench/soak.ts [--sessions 10000] [--concurrency 20]
 *
 * The per-address connection bounds are switched off for the run: 20 addresses opening hundreds
 * of sessions a second is the load being measured, not an attack to refuse.
 */
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { parseArgs } from 'node:util';
import { startFakeBackend, legacyScript } from '../test/harness/fake-backend.js';
import { benchEnvironment, fdCount, mb, median, percentile, rssBytes, startPopwardenProcess, startStunnel } from './lib.js';

const { values } = parseArgs({
  options: { sessions: { type: 'string', default: '10000' }, concurrency: { type: 'string', default: '20' } },
});
const SESSIONS = Number(values.sessions);
const CONCURRENCY = Number(values.concurrency);
const SOURCES = Array.from({ length: 20 }, (_, i) => `127.0.0.${10 + i}`);

const env = benchEnvironment();
const message = Buffer.from(`From: soak@example.test\r\nSubject: soak\r\n\r\n${'line of a small message\r\n'.repeat(100)}`);
const backend = await startFakeBackend(legacyScript({ accounts: { soak: { pass: 'soakpass', messages: [message] } } }));

/** One whole mail session; resolves with its duration in ms. */
function session(port: number, source: string): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const tcp = netConnect({ host: '127.0.0.1', port, localAddress: source });
    tcp.once('error', reject);
    const socket = tlsConnect({ socket: tcp, ca: env.ca, servername: 'localhost' });
    const script = ['USER soak', 'PASS soakpass', 'UIDL', 'RETR 1', 'QUIT'];
    let received = '';
    let step = -1; // -1: waiting for the greeting
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1');
      // A reply is complete at its first line, or for UIDL/RETR at the terminator.
      const multiline = step === 2 || step === 3;
      const end = multiline ? received.indexOf('\r\n.\r\n') : received.indexOf('\r\n');
      if (end === -1) return;
      if (!received.startsWith('+OK')) return reject(new Error(`unexpected reply: ${received.slice(0, 80)}`));
      received = '';
      step += 1;
      if (step < script.length) socket.write(`${script[step]}\r\n`);
    });
    socket.once('error', reject);
    socket.once('close', () => (step === script.length ? resolve(performance.now() - started) : reject(new Error(`closed at step ${step}`))));
  });
}

/** Runs SESSIONS sessions, CONCURRENCY at a time; returns durations and the wall time. */
async function soak(port: number): Promise<{ durations: number[]; seconds: number }> {
  const durations: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < SESSIONS) {
        const index = next++;
        durations.push(await session(port, SOURCES[index % SOURCES.length]!));
      }
    }),
  );
  return { durations, seconds: (performance.now() - started) / 1000 };
}

const unbounded = ['--limits-max-new-connections-per-ip', '0', '--limits-max-new-connections-per-ip-per-minute', '0', '--limits-max-sessions-per-ip', '0', '--limits-max-handshakes-per-ip', '0'];
const popwarden = await startPopwardenProcess(env, backend.port, unbounded);
const stunnel = await startStunnel(env, backend.port);

// Warm up both, then take popwarden's baseline.
await Promise.all([session(popwarden.port, SOURCES[0]!), session(stunnel.port, SOURCES[0]!)]);
await new Promise((resolve) => setTimeout(resolve, 500));
const baseline = { rss: rssBytes(popwarden.pid), fds: fdCount(popwarden.pid) };
let peakRss = baseline.rss;
const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssBytes(popwarden.pid))), 100);
const throughPopwarden = await soak(popwarden.port);
const settle = (): Promise<unknown> => new Promise((resolve) => setTimeout(resolve, 2_000));
await settle();
const afterFirst = { rss: rssBytes(popwarden.pid), fds: fdCount(popwarden.pid) };
// A second round on the same process: a leak grows again, warm-up does not.
await soak(popwarden.port);
clearInterval(sampler);
await settle();
const afterSecond = { rss: rssBytes(popwarden.pid), fds: fdCount(popwarden.pid) };
const throughStunnel = await soak(stunnel.port);

const rate = (r: { durations: number[]; seconds: number }): number => r.durations.length / r.seconds;
console.log(`${SESSIONS} sessions (TLS 1.3, USER/PASS, UIDL, RETR of ${message.length} bytes, QUIT), ${CONCURRENCY} at a time, from ${SOURCES.length} addresses`);
console.log('');
console.log('| measure | popwarden | stunnel (same run) | ratio popwarden/stunnel |');
console.log('|---|---|---|---|');
console.log(`| sessions per second | ${rate(throughPopwarden).toFixed(0)} | ${rate(throughStunnel).toFixed(0)} | ${(rate(throughPopwarden) / rate(throughStunnel)).toFixed(2)} |`);
console.log(`| session p50 / p99 (ms) | ${median(throughPopwarden.durations).toFixed(1)} / ${percentile(throughPopwarden.durations, 99).toFixed(1)} | ${median(throughStunnel.durations).toFixed(1)} / ${percentile(throughStunnel.durations, 99).toFixed(1)} | |`);
console.log('');
console.log(
  `popwarden RSS ${mb(baseline.rss)} MB before, ${mb(afterFirst.rss)} MB after round 1, ${mb(afterSecond.rss)} MB after round 2 ` +
    `(peak ${mb(peakRss)} MB); open fds ${baseline.fds} before, ${afterFirst.fds} and ${afterSecond.fds} after`,
);
await backend.stop();
process.exit(0);
