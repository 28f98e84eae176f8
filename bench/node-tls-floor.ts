/**
 * What Node's own TLS costs, with no popwarden code: a bare node:tls server
 * (bench/bare-tls-server.mjs, run with the node flags of popwarden's shebang and pinned like a
 * front end) measured as the comparison measures popwarden, beside `openssl s_server`:
 *
 * - KiB of RSS per idle TLS 1.3 session at 1,000 and 5,000 sessions, on a fresh process, from
 *   after one warm-up session (the (d) method; bench/idle-sessions.py holds the sessions);
 * - CPU µs per full TLS 1.3 handshake against `openssl s_time -new` (the (b) reference method).
 *
 * The floor under popwarden's (b) and (d): popwarden cannot cost less than the TLS it runs on.
 * The floor of a relayed login (a backend connection per client, USER/PASS relayed) and of every
 * other workload is `npm run bench -- --targets popwarden,stunnel,node` (bench/bare-tls-relay.mjs).
 *
 *   node --import tsx bench/node-tls-floor.ts [--seconds 5] [--no-pin]
 */
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { freePort, waitForPort } from '../test/harness/ports.js';
import { ACCOUNTS, passwordOf } from './backend.js';
import { PopClient } from './pop-client.js';
import { rssKiB, spawnWrapped, stopTree } from './proc.js';
import { benchEnvironment, shebangNodeOptions } from './targets.js';
import { handshakeCpuUs, idleGenerator } from './workloads.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, 'no-pin': { type: 'boolean', default: false } } });
const seconds = Number(values.seconds);
process.chdir(fileURLToPath(new URL('..', import.meta.url)));
const env = benchEnvironment(values['no-pin'] !== true);
const server = fileURLToPath(new URL('./bare-tls-server.mjs', import.meta.url));
const bareArgv = (port: number): string[] => [process.execPath, ...shebangNodeOptions('dist/cli.js'), server, String(port), env.certFile, env.keyFile];
const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 1_000));

const port = await freePort();
const bare = spawnWrapped(env.frontWrap, bareArgv(port), 'inherit');
const lines: string[] = [];
try {
  await waitForPort('127.0.0.1', port);
  const generator = idleGenerator(env, port);
  try {
    const warm = await PopClient.login({ port, tls: true, ca: env.ca }, ACCOUNTS.small, passwordOf(ACCOUNTS.small));
    await warm.quit().catch(() => undefined); // the bare server answers +OK and keeps the socket
    await settle();
    const baseline = rssKiB(bare.pid!);
    lines.push(`| RSS MiB after one session | ${(baseline / 1024).toFixed(1)} |`);
    for (const n of [1_000, 5_000]) {
      const held = await generator.hold(n);
      await settle();
      lines.push(`| KiB per idle session at ${n.toLocaleString('en-US')} (failed: ${held.failed}) | ${((rssKiB(bare.pid!) - baseline) / held.held).toFixed(1)} |`);
    }
  } finally {
    await generator.stop();
  }
} finally {
  await stopTree(bare.pid!, bare);
}
const nodePort = await freePort();
const nodeUs = await handshakeCpuUs(env, bareArgv(nodePort), nodePort, seconds);
const sslPort = await freePort();
const sslUs = await handshakeCpuUs(env, ['openssl', 's_server', '-quiet', '-tls1_3', '-accept', `127.0.0.1:${sslPort}`, '-cert', env.certFile, '-key', env.keyFile], sslPort, seconds);
lines.push(`| CPU µs per full TLS 1.3 handshake (openssl s_time -new, ${seconds} s) | ${nodeUs.toFixed(0)} (openssl s_server: ${sslUs.toFixed(0)}) |`);
console.log(['| bare node:tls server, ' + process.version + ' | |', '|---|--:|', ...lines].join('\n'));
process.exit(0);
