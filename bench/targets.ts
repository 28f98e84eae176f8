/**
 * The front ends the comparison measures, all in front of the same Dovecot with the same
 * ECDSA P-256 certificate: popwarden (dist/, with its Redis limiter), stunnel4 and nginx's mail
 * proxy (implicit TLS each), and the direct backend in clear as the ceiling. Each runs pinned to
 * core 0 (when there are two) with the descriptor limit raised to the hard limit; everything
 * else (the load generator, Dovecot, Redis, the auth_http endpoint) stays on core 1.
 */
import { execFileSync, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitForPort } from '../test/harness/ports.js';
import { spawnWrapped, stopTree } from './proc.js';

/** `node` is bench/bare-tls-relay.mjs, Node's floor: measured only when asked (`--targets`). */
export type TargetName = 'popwarden' | 'stunnel' | 'nginx' | 'node' | 'direct';
/** Every target, in the report's column order. */
export const TARGET_NAMES: readonly TargetName[] = ['popwarden', 'stunnel', 'nginx', 'node', 'direct'];

export interface Target {
  readonly name: TargetName;
  readonly port: number;
  /** Implicit TLS (every proxy) or clear text (the direct backend). */
  readonly tls: boolean;
  /** The process tree whose CPU and memory are the front end's own cost; undefined for direct. */
  readonly pid: number | undefined;
  /** What the front end needs beside itself for a login (Redis, the auth_http endpoint). */
  readonly helperPid: number | undefined;
  stop(): Promise<void>;
}

export interface Environment {
  readonly dir: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** The certificate, for clients to trust. */
  readonly ca: Buffer;
  /** Prefix of a command line that pins a front end to its core and raises its descriptor limit. */
  readonly frontWrap: readonly string[];
  /** The same for everything that is not a front end. */
  readonly restWrap: readonly string[];
}

/**
 * A temp dir with one ECDSA P-256 certificate for every front end, and the pinning: this
 * process (all its threads) moves to core 1 and its children inherit that; front ends get core 0.
 * Every child is killed, and the dir removed, when this process exits.
 */
export function benchEnvironment(pin: boolean): Environment {
  const dir = mkdtempSync(join(tmpdir(), 'popwarden-compare-'));
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', keyFile, '-out', certFile], { stdio: 'ignore' });
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  const raiseLimit = ['sh', '-c', 'ulimit -n "$(ulimit -Hn)" && exec "$@"', 'sh'];
  const twoCores = pin && cpus().length >= 2;
  if (twoCores) execFileSync('taskset', ['-a', '-p', '-c', '1', String(process.pid)], { stdio: 'ignore' });
  return {
    dir,
    certFile,
    keyFile,
    ca: readFileSync(certFile),
    frontWrap: twoCores ? ['taskset', '-c', '0', ...raiseLimit] : raiseLimit,
    restWrap: raiseLimit,
  };
}

function target(name: TargetName, port: number, child: ChildProcess, helperPid: number | undefined): Target {
  const pid = child.pid!;
  return { name, port, tls: true, pid, helperPid, stop: () => stopTree(pid, child) };
}

async function listening(child: ChildProcess, port: number, what: string): Promise<void> {
  const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`${what} exited with ${code} before listening`))));
  await Promise.race([waitForPort('127.0.0.1', port, 15_000), exited]);
  exited.catch(() => undefined);
}

/** The node flags an installed popwarden runs with: those of its shebang (`env -S node FLAGS`). */
export function shebangNodeOptions(script: string): string[] {
  const first = readFileSync(script, 'latin1').split('\n', 1)[0] ?? '';
  const words = first.replace(/^#!\S*env\s+(-S\s+)?/, '').split(/\s+/);
  return words[0] === 'node' ? words.slice(1).filter((word) => word !== '') : [];
}

/**
 * popwarden from dist/ with the Redis limiter, connection bounds off (one address is the load).
 * `nodeOptions` go to node itself (`--cpu-prof`, `--heap-prof`); `cli` may name another build;
 * `processEnv` goes to its environment (an allocator).
 */
export async function startPopwarden(env: Environment, backendPort: number, redisUrl: string, nodeOptions: readonly string[] = [], cli = 'dist/cli.js', processEnv: Readonly<Record<string, string>> = {}): Promise<Target> {
  const port = await freePort();
  const child = spawnWrapped(env.frontWrap, [process.execPath, ...shebangNodeOptions(cli), ...nodeOptions, cli, '--listen-tls', `127.0.0.1:${port}`, '--listen-stls', `127.0.0.1:${await freePort()}`,
    '--backend', `127.0.0.1:${backendPort}`, '--cert', env.certFile, '--key', env.keyFile, '--redis', redisUrl, '--auth-failure-delay', '0s',
    '--limits-max-new-connections-per-ip', '0', '--limits-max-new-connections-per-ip-per-minute', '0', '--limits-max-sessions-per-ip', '0', '--limits-max-handshakes-per-ip', '0',
    // The load is one user from one address with up to 32 logins in flight, and a login in flight
    // holds a place in each failed-login counter: room for all of them, the limiter still asked.
    '--rate-limit-user-ip-max-failures', '1000', '--rate-limit-ip-max-failures', '1000', '--rate-limit-user-max-failures', '1000',
    '--limits-max-sessions', '0', '--limits-max-handshakes', '0', '--log-level', 'warn', '--state-dir', env.dir, '--metrics-listen', 'off', '--backend-probe-interval', '0s'], 'inherit', processEnv);
  await listening(child, port, 'popwarden');
  return target('popwarden', port, child, undefined);
}

/** stunnel4 as PROXIES.md runs it: implicit TLS, TCP_NODELAY both ways, warnings only. */
export async function startStunnel(env: Environment, backendPort: number): Promise<Target> {
  const port = await freePort();
  const conf = join(env.dir, `stunnel-${port}.conf`);
  writeFileSync(conf, [
    'foreground = yes', 'pid =', 'syslog = no', `output = ${env.dir}/stunnel-${port}.log`, 'debug = warning', '',
    '[pop3s]', `accept = 127.0.0.1:${port}`, `connect = 127.0.0.1:${backendPort}`, `cert = ${env.certFile}`, `key = ${env.keyFile}`,
    'socket = l:TCP_NODELAY=1', 'socket = r:TCP_NODELAY=1', '',
  ].join('\n'));
  const child = spawnWrapped(env.frontWrap, ['stunnel4', conf]);
  await listening(child, port, 'stunnel4');
  return target('stunnel', port, child, undefined);
}

/**
 * bench/bare-tls-relay.mjs (a node:tls relay with no POP3 code: Node's floor under popwarden)
 * with the node flags of `cli`'s shebang and popwarden's environment, pinned like a front end.
 */
export async function startBareRelay(env: Environment, backendPort: number, cli = 'dist/cli.js', processEnv: Readonly<Record<string, string>> = {}): Promise<Target> {
  const port = await freePort();
  const script = fileURLToPath(new URL('./bare-tls-relay.mjs', import.meta.url));
  const child = spawnWrapped(env.frontWrap, [process.execPath, ...shebangNodeOptions(cli), script, String(port), env.certFile, env.keyFile, String(backendPort)], 'inherit', processEnv);
  await listening(child, port, 'bare node:tls relay');
  return target('node', port, child, undefined);
}

/** The auth_http endpoint nginx asks before every login: always the backend's address. */
export async function startAuthHttp(env: Environment, backendPort: number): Promise<{ port: number; pid: number; stop(): Promise<void> }> {
  const port = await freePort();
  const script = fileURLToPath(new URL('./auth-http.ts', import.meta.url));
  const child = spawnWrapped(env.restWrap, [process.execPath, '--import', 'tsx', script, String(port), String(backendPort)], 'inherit');
  await listening(child, port, 'auth_http endpoint');
  return { port, pid: child.pid!, stop: () => stopTree(child.pid!, child) };
}

/** nginx 1.22 with libnginx-mod-mail as PROXIES.md runs it: one worker, implicit TLS, USER/PASS. */
export async function startNginx(env: Environment, authPort: number, authPid: number): Promise<Target> {
  const port = await freePort();
  const prefix = mkdtempSync(join(env.dir, 'nginx-'));
  writeFileSync(join(prefix, 'nginx.conf'), `load_module /usr/lib/nginx/modules/ngx_mail_module.so;
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 20000;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log error;
events { worker_connections 16000; }
mail {
  server_name localhost;
  auth_http 127.0.0.1:${authPort}/auth;
  proxy_pass_error_message on;
  pop3_auth plain;
  ssl_certificate ${env.certFile};
  ssl_certificate_key ${env.keyFile};
  ssl_protocols TLSv1.2 TLSv1.3;
  server { listen 127.0.0.1:${port} ssl; protocol pop3; }
}
`);
  const child = spawnWrapped(env.frontWrap, ['nginx', '-p', prefix, '-e', `${prefix}/error.log`, '-c', `${prefix}/nginx.conf`], 'inherit');
  await listening(child, port, 'nginx');
  return target('nginx', port, child, authPid);
}

/** The backend itself, in clear: no front end, the ceiling every rate is bounded by. */
export function directTarget(backendPort: number): Target {
  return { name: 'direct', port: backendPort, tls: false, pid: undefined, helperPid: undefined, stop: async () => undefined };
}

/** Versions for the report's header (each tool's own words; `missing` when it is not installed). */
export function versions(): Record<string, string> {
  const run = (cmd: string, args: string[], pattern: RegExp): string => {
    const result = spawnSync(cmd, args, { encoding: 'utf8' });
    if (result.error !== undefined) return 'missing';
    return pattern.exec(`${result.stdout}${result.stderr}`)?.[1] ?? 'unknown';
  };
  return {
    cpu: `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'unknown'}`,
    node: process.version,
    openssl: run('openssl', ['version'], /OpenSSL (\S+)/),
    stunnel: run('stunnel4', ['-version'], /stunnel (\S+)/),
    nginx: run('nginx', ['-v'], /nginx\/(\S+)/),
    dovecot: run('dovecot', ['--version'], /^(\S+)/m),
    redis: run('redis-server', ['--version'], /v=(\S+)/),
    kernel: run('uname', ['-r'], /(\S+)/),
  };
}
