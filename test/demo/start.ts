/**
 * `npm start`: a local demo of popwarden in front of a legacy POP3 server, on one machine.
 *
 * Starts the in-memory demo backend (test/demo/demo-backend.ts, NOT a production server) on
 * 127.0.0.1:11110, or a free port if that is taken, then runs the real popwarden CLI from dist/
 * in front of it with implicit TLS on 127.0.0.1:9995 and STLS on 127.0.0.1:9110, and prints
 * commands to try once popwarden answers. Ctrl-C stops both.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { unitEnvironmentFilling } from '../harness/systemd-unit.js';
import { startDemoBackend, type DemoBackend } from './demo-backend.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'dist', 'cli.js');
const HOST = '127.0.0.1';
const TLS_PORT = 9995;
const STLS_PORT = 9110;
const BACKEND_PORT = 11110;
const METRICS_PORT = 9595;
const READY_TIMEOUT_MS = 30_000;
/** Longer than popwarden's own drain on SIGTERM, so a clean stop is never cut short. */
const STOP_TIMEOUT_MS = 15_000;

const say = (text: string): void => void process.stderr.write(`[demo] ${text}\n`);

/** Newest modification time of any file under dir (0 if dir is missing). */
function newestMtime(dir: string): number {
  if (!existsSync(dir)) return 0;
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

/** `npm ci` builds dist/ through `prepare`; rebuild here only if it is missing or older than src/. */
function ensureBuilt(): void {
  const built = existsSync(CLI) ? statSync(CLI).mtimeMs : 0;
  const sources = Math.max(newestMtime(join(ROOT, 'src')), statSync(join(ROOT, 'tsconfig.json')).mtimeMs);
  if (built >= sources) return;
  say(built === 0 ? 'dist/cli.js is missing: running npm run build' : 'src/ changed since the last build: running npm run build');
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const result = spawnSync(npm, ['run', 'build'], { cwd: ROOT, stdio: 'inherit' });
  if (result.status !== 0) {
    say('the build failed (see above); fix it or run `npm ci`, then `npm start` again');
    process.exit(1);
  }
}

/** Fails early, with a readable message, if a demo port is already taken. */
function assertPortFree(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        new Error(
          e.code === 'EADDRINUSE'
            ? `${HOST}:${port} is already in use (another \`npm start\` still running?)`
            : `cannot bind ${HOST}:${port}: ${e.message}`,
        ),
      ),
    );
    probe.listen({ host: HOST, port, exclusive: true }, () => probe.close(() => resolve()));
  });
}

async function startBackend(): Promise<DemoBackend> {
  const log = (line: string): void => void process.stderr.write(`[demo-backend] ${line}\n`);
  try {
    return await startDemoBackend({ host: HOST, port: BACKEND_PORT, log });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    say(`${HOST}:${BACKEND_PORT} is taken; the demo backend takes a free port instead`);
    return startDemoBackend({ host: HOST, port: 0, log });
  }
}

/** One plaintext session on the STLS port: greeting then QUIT. True if popwarden answered +OK. */
function greets(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: HOST, port });
    let text = '';
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2000, () => done(false));
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      text += chunk;
      if (!text.includes('\n')) return;
      const ok = text.startsWith('+OK');
      if (ok) socket.end('QUIT\r\n');
      done(ok);
    });
    socket.on('error', () => done(false));
    socket.on('close', () => done(false));
  });
}

function printTryIt(backend: DemoBackend): void {
  const lines = [
    '',
    `popwarden is up: TLS ${HOST}:${TLS_PORT} and STLS ${HOST}:${STLS_PORT}  ->  demo POP3 server ${backend.host}:${backend.port}`,
    'The certificate is a self-signed demo pair in .state/, which is why the commands below skip verification.',
    '',
    'Try it from another terminal:',
    '',
    `  openssl s_client -connect ${HOST}:${TLS_PORT} -quiet`,
    '      then type, one line at a time:',
    '        USER demo',
    '        PASS demo-password',
    '        LIST',
    '        RETR 1',
    '        QUIT',
    '',
    `  openssl s_client -starttls pop3 -connect ${HOST}:${STLS_PORT} -crlf -quiet`,
    '      (the same commands, after STLS on the plaintext port)',
    '',
    `  curl -k pop3s://${HOST}:${TLS_PORT}/1 -u demo:demo-password`,
    `  curl -k --ssl-reqd pop3://${HOST}:${STLS_PORT}/ -u demo:demo-password`,
    '',
    `  curl -s http://${HOST}:${METRICS_PORT}/metrics | grep '^popwarden_login'`,
    `  curl -s http://${HOST}:${METRICS_PORT}/readyz`,
    '',
    'Ctrl-C stops popwarden and the demo server.',
    '',
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

async function main(): Promise<void> {
  ensureBuilt();
  await assertPortFree(TLS_PORT);
  await assertPortFree(STLS_PORT);
  await assertPortFree(METRICS_PORT);
  const backend = await startBackend();
  say(`demo POP3 backend (NOT for production) on ${backend.host}:${backend.port}, user demo / demo-password`);

  const args = [
    CLI,
    '--listen-tls', `${HOST}:${TLS_PORT}`,
    '--listen-stls', `${HOST}:${STLS_PORT}`,
    '--backend', `${backend.host}:${backend.port}`,
    '--state-dir', '.state',
    '--metrics-listen', `${HOST}:${METRICS_PORT}`,
  ];
  // The environment the systemd unit gives popwarden (jemalloc, when libjemalloc2 is installed),
  // where the caller has not set its own.
  const unitEnv = unitEnvironmentFilling(process.env);
  const envWords = Object.entries(unitEnv).map(([k, v]) => `${k}=${v} `).join('');
  say(`starting: ${envWords}node ${args.map((a) => a.replace(ROOT, '')).join(' ')}`);
  // Not detached: if this process is killed outright, the terminal's signals still reach popwarden.
  const child: ChildProcess = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...unitEnv }, stdio: ['ignore', 'inherit', 'inherit'] });

  let stopping = false;
  let ready = false;
  const exited = new Promise<number>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? (signal === null ? 1 : 128)));
    child.once('error', (e) => {
      say(`could not start popwarden: ${e.message}`);
      resolve(1);
    });
  });

  const stop = async (why: string, exitCode = 0): Promise<never> => {
    if (stopping) {
      say('second signal: killing popwarden now');
      child.kill('SIGKILL');
      process.exit(130);
    }
    stopping = true;
    say(`${why}: stopping popwarden, then the demo backend`);
    // A Ctrl-C in the terminal has already sent SIGINT to popwarden too; SIGTERM is its documented stop signal.
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const timer = setTimeout(() => {
      say(`popwarden did not stop within ${STOP_TIMEOUT_MS / 1000}s: killing it`);
      child.kill('SIGKILL');
    }, STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
    await backend.close();
    say('stopped');
    process.exit(exitCode);
  };
  process.on('SIGINT', () => void stop('Ctrl-C'));
  process.on('SIGTERM', () => void stop('SIGTERM'));

  void exited.then(async (code) => {
    if (stopping) return;
    say(
      ready
        ? `popwarden exited unexpectedly (code ${code})`
        : `popwarden exited with code ${code} before it was listening; see its output above`,
    );
    await backend.close();
    process.exit(code === 0 ? 1 : code);
  });

  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!stopping && child.exitCode === null) {
    if (await greets(STLS_PORT)) {
      ready = true;
      printTryIt(backend);
      return;
    }
    if (Date.now() > deadline) {
      say(`popwarden did not answer on ${HOST}:${STLS_PORT} within ${READY_TIMEOUT_MS / 1000}s`);
      await stop('startup timeout', 1);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

main().catch((e: unknown) => {
  say(e instanceof Error ? e.message : String(e));
  process.exit(1);
});
