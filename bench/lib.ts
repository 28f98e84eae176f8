/**
 * Shared pieces of the benchmarks: a throwaway certificate, popwarden as its own process (so its
 * memory can be read alone), stunnel in front of the same backend as the peer to compare with,
 * and /proc readings. Everything binds to 127.0.0.1 and dies with the benchmark.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitForPort } from '../test/harness/ports.js';

export interface BenchEnvironment {
  readonly dir: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** The certificate, for clients to trust. */
  readonly ca: Buffer;
}

const children: ChildProcess[] = [];

/** A temp dir with a self-signed certificate; removed, with every child, when the process exits. */
export function benchEnvironment(): BenchEnvironment {
  const dir = mkdtempSync(join(tmpdir(), 'popwarden-bench-'));
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', keyFile, '-out', certFile], { stdio: 'ignore' });
  process.on('exit', () => {
    for (const child of children) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  return { dir, certFile, keyFile, ca: readFileSync(certFile) };
}

/** popwarden from dist/ (run `npm run build` first) on a free implicit-TLS port, metrics off. */
export async function startPopwardenProcess(env: BenchEnvironment, backendPort: number, extra: readonly string[] = []): Promise<{ port: number; pid: number }> {
  const port = await freePort();
  const child = spawn(process.execPath, ['dist/cli.js', '--listen-tls', `127.0.0.1:${port}`, '--listen-stls', `127.0.0.1:${await freePort()}`,
    '--backend', `127.0.0.1:${backendPort}`, '--cert', env.certFile, '--key', env.keyFile, '--auth-failure-delay', '0s',
    '--log-level', 'warn', '--state-dir', env.dir, '--metrics-listen', 'off', ...extra], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  await waitForPort('127.0.0.1', port);
  return { port, pid: child.pid! };
}

/** stunnel4 terminating implicit TLS in front of the same backend: a C relay with no POP3 in it. */
export async function startStunnel(env: BenchEnvironment, backendPort: number): Promise<{ port: number; pid: number }> {
  const port = await freePort();
  const conf = join(env.dir, `stunnel-${port}.conf`);
  writeFileSync(conf, `foreground = yes\npid =\n[pop3s]\naccept = 127.0.0.1:${port}\nconnect = 127.0.0.1:${backendPort}\ncert = ${env.certFile}\nkey = ${env.keyFile}\n`);
  const child = spawn('stunnel4', [conf], { stdio: 'ignore' });
  children.push(child);
  await waitForPort('127.0.0.1', port);
  return { port, pid: child.pid! };
}

/** Resident memory of a process, from /proc. */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
}

/** Open file descriptors of a process. */
export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

export const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
export const percentile = (xs: readonly number[], p: number): number =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
export const mb = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1);
