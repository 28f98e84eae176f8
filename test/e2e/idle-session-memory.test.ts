/**
 * What an idle logged-in session holds in popwarden's JavaScript heap (issue 10.3d and 10.4),
 * counted, not timed. The built popwarden (`npm run build` first: dist/cli.js, as it runs in
 * production; a TypeScript loader would add its own per-closure cost) runs in front of Dovecot as
 * a process of its own, and a heap snapshot is taken in it (test/harness/heap-snapshot-on-request.mjs)
 * before and after N sessions log in and sit idle, held by a third process
 * (bench/idle-sessions.py). A snapshot follows a full GC, so it holds only what is alive. The
 * same for bench/bare-tls-server.mjs, a node:tls server that answers +OK to everything: what
 * Node's own TLS socket costs, whatever the Node version. popwarden's own share per session (the
 * session, its backend link and socket, timers, listeners, logger) is the difference, and must
 * stay under a bound the code before issue 10.4's work exceeded.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';
import { sampleMaildrop } from '../harness/maildrop.js';
import { testCertificate } from '../harness/popwarden.js';
import { freePort, waitForPort } from '../harness/ports.js';
import { scratchDir } from '../harness/scratch.js';

const SESSIONS = 200;
/**
 * popwarden's own JavaScript bytes per idle session, above the bare TLS socket's. On Node 20,
 * 200 sessions: 4,900 before issue 10.4's changes (a pino child logger, a closure per socket
 * listener, a sink object, the backend link's login timer, Node's per-socket ALPN copy, the
 * handshake's bookkeeping kept by the close listener, two closures per admission), 2,900 after,
 * within 10 bytes from run to run; what remains is mostly the backend socket (about 1,500), the
 * session object, its idle timer and line framer, and the admission. The bound leaves 400 bytes:
 * less than the child logger alone (about 500) would bring back.
 */
const MAX_OWN_BYTES_PER_SESSION = 3_300;

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const PRELOAD = join(ROOT, 'test/harness/heap-snapshot-on-request.mjs');
const { alice } = sampleMaildrop();
const dir = scratchDir('idle-session-memory');

/** Asks `child` for a heap snapshot and resolves with its file once written. */
async function snapshot(child: ChildProcess, name: string): Promise<string> {
  const answer = once(child, 'message') as Promise<[{ written: string }]>;
  child.send({ snapshot: join(dir, `${name}.heapsnapshot`) });
  return (await answer)[0].written;
}

/**
 * Reads a snapshot without keeping it: the largest id of its JavaScript objects (ids are stable
 * between the snapshots of one process), and the self sizes of the objects newer than `since`.
 * Left out: compiled code (what V8 chose to optimise meanwhile), native objects (new ids in every
 * snapshot) and shapes (made once per kind of object, not per session).
 */
function heapSince(file: string, since: number): { maxId: number; newBytes: number } {
  const parsed = JSON.parse(readFileSync(file, 'utf8')) as { snapshot: { meta: { node_fields: string[]; node_types: [string[]] } }; nodes: number[] };
  rmSync(file);
  const fields = parsed.snapshot.meta.node_fields;
  const types = parsed.snapshot.meta.node_types[0];
  const [typeAt, idAt, sizeAt] = ['type', 'id', 'self_size'].map((field) => fields.indexOf(field)) as [number, number, number];
  const skipped = new Set(['code', 'native', 'synthetic', 'object shape']);
  let maxId = 0;
  let newBytes = 0;
  for (let i = 0; i < parsed.nodes.length; i += fields.length) {
    if (skipped.has(types[parsed.nodes[i + typeAt]!]!)) continue;
    const id = parsed.nodes[i + idAt]!;
    maxId = Math.max(maxId, id);
    if (id > since) newBytes += parsed.nodes[i + sizeAt]!;
  }
  return { maxId, newBytes };
}

/** JavaScript bytes per idle session that `server` (listening on `port`) holds. */
async function bytesPerIdleSession(server: ChildProcess, port: number, name: string): Promise<number> {
  const cert = testCertificate();
  const holder = spawn('python3', [join(ROOT, 'bench/idle-sessions.py'), String(port), cert.caFile, alice.user, alice.pass], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = once(holder, 'exit');
  const lines = createInterface({ input: holder.stdout! })[Symbol.asyncIterator]();
  const hold = async (n: number): Promise<string> => {
    holder.stdin!.write(`hold ${n}\n`);
    const line = await lines.next();
    return line.done === true ? 'exited' : line.value;
  };
  try {
    // One session first: what a first login makes once (caches, pools, compiled code) is not per session.
    assert.equal(await hold(1), 'held 1 failed 0');
    const since = heapSince(await snapshot(server, `${name}-before`), Number.MAX_SAFE_INTEGER).maxId;
    assert.equal(await hold(SESSIONS + 1), `held ${SESSIONS + 1} failed 0`);
    return heapSince(await snapshot(server, `${name}-after`), since).newBytes / SESSIONS;
  } finally {
    holder.stdin!.end();
    await exited;
  }
}

/** Starts `argv` under node with the snapshot preload and waits for `port`. */
async function startMeasured(argv: readonly string[], port: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', PRELOAD, ...argv], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  await waitForPort('127.0.0.1', port, 15_000);
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}

describe('what an idle logged-in TLS session holds', { timeout: 240_000 }, () => {
  let dovecot: Dovecot;
  before(async () => {
    dovecot = await startDovecot({ profile: 'user-only', manySessions: true });
  });
  after(async () => {
    await dovecot.stop();
  });

  test(`popwarden holds at most ${MAX_OWN_BYTES_PER_SESSION} bytes of JavaScript per idle session beyond Node's TLS socket`, async (t) => {
    const cert = testCertificate();
    const barePort = await freePort();
    const bare = await startMeasured([join(ROOT, 'bench/bare-tls-server.mjs'), String(barePort), cert.certFile, cert.keyFile], barePort);
    let floor: number;
    try {
      floor = await bytesPerIdleSession(bare, barePort, 'bare');
    } finally {
      await stop(bare);
    }

    // As it runs in production (dist/, logs at info), with the per-address bounds off: the
    // sessions all come from 127.0.0.1.
    const port = await freePort();
    const popwarden = await startMeasured([
      join(ROOT, 'dist/cli.js'), '--listen-tls', `127.0.0.1:${port}`, '--listen-stls', `127.0.0.1:${await freePort()}`,
      '--backend', `${dovecot.host}:${dovecot.port}`, '--backend-trust-loopback', '--cert', cert.certFile, '--key', cert.keyFile,
      '--state-dir', scratchDir('idle-session-memory-state'), '--metrics-listen', 'off', '--backend-probe-interval', '0s',
      '--limits-max-new-connections-per-ip', '0', '--limits-max-new-connections-per-ip-per-minute', '0',
      '--limits-max-sessions-per-ip', '0', '--limits-max-handshakes-per-ip', '0',
    ], port);
    let measured: number;
    try {
      measured = await bytesPerIdleSession(popwarden, port, 'popwarden');
    } finally {
      await stop(popwarden);
    }
    const own = measured - floor;
    t.diagnostic(`bytes per idle session: popwarden ${measured.toFixed(0)}, bare node:tls ${floor.toFixed(0)}, popwarden's own ${own.toFixed(0)}`);
    assert.ok(
      own <= MAX_OWN_BYTES_PER_SESSION,
      `popwarden holds ${measured.toFixed(0)} bytes per idle session, ${own.toFixed(0)} above the bare TLS server's ${floor.toFixed(0)}`,
    );
  });
});
