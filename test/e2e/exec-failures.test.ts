/**
 * `backend: exec:` when the program misbehaves (issue 12.1), with a tiny inetd-style script for the
 * behaviours no real server shows on demand: a missing program, one that is not executable, one
 * that exits before its greeting, one that ignores SIGTERM, more sessions than
 * limits.max_backend_processes, one that lingers after a refused password (a blocked guess
 * starts none; a refused one gives its place back at once), and what the program finds in its
 * environment. Each failure gives
 * the client `-ERR [SYS/TEMP]` and the log ONE line naming the program; after every session
 * popwarden has no child left and never a zombie (/proc).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecCommand } from '../../src/config/types.js';
import { backendProgramsExited, startTestProxy, type TestProxy } from '../harness/popwarden.js';
import { childrenOf } from '../harness/proc.js';
import { startProtected } from '../harness/redis.js';
import { RawClient } from '../harness/raw-client.js';
import { writeTinyInetdServer } from '../harness/tiny-inetd.js';

const dir = mkdtempSync(join(tmpdir(), 'popwarden-exec-failures-'));

function script(name: string, text: string, mode = 0o755): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  chmodSync(path, mode);
  return path;
}

const serve = writeTinyInetdServer(dir);
const exec = (command: string, environment: Record<string, string> = {}): ExecCommand => ({ command, args: [], environment, cwd: undefined });

async function startProxy(program: ExecCommand, maxBackendProcesses = 10): Promise<TestProxy> {
  return startTestProxy({ backend: { address: { kind: 'exec', ...program }, trustLoopback: undefined }, limits: { maxBackendProcesses } });
}

/** Logs in through the TLS port; the client and the PASS reply. */
async function login(proxy: TestProxy): Promise<{ client: RawClient; reply: string }> {
  const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
  await client.readLine();
  assert.match(await client.command('USER alice'), /^\+OK/);
  return { client, reply: await client.command('PASS secret', 10_000) };
}

const WARN_OR_WORSE = new Set(['warn', 'error', 'fatal']);

/** Log lines at warn or above that name `program`. */
const linesNaming = (proxy: TestProxy, program: string): Record<string, unknown>[] =>
  proxy.logs().filter((l) => WARN_OR_WORSE.has(String(l['level'])) && JSON.stringify(l).includes(program));

/** The test runner's own helpers (tsx's esbuild service), running before any proxy. */
const runnerChildren = childrenOf(process.pid).map((p) => p.pid);

/** popwarden (this process) has no child of its own left and no zombie at all. */
function assertNoChildren(): void {
  const left = childrenOf(process.pid).filter((p) => p.state === 'Z' || !runnerChildren.includes(p.pid));
  assert.deepEqual(left.map((p) => `${p.pid} ${p.comm} ${p.state}`), []);
}

after(() => rmSync(dir, { recursive: true, force: true }));

describe('exec: a program that cannot serve', { timeout: 60_000 }, () => {
  const cases: [string, () => string, RegExp][] = [
    ['missing', () => join(dir, 'no-such-server'), /cannot run .*no-such-server: it \(or its working directory\) does not exist/],
    ['not executable', () => writeTinyInetdServer(dir, 'not-executable.sh', 0o644), /cannot run .*not-executable.sh: it is not executable/],
    ['exits before its greeting', () => script('early.sh', '#!/bin/sh\necho "cannot open /etc/ipop3d.conf" >&2\nexit 7\n'), /early.sh exited with status 7 before its greeting; stderr: cannot open \/etc\/ipop3d.conf/],
  ];
  for (const [label, make, reason] of cases) {
    test(`${label}: -ERR [SYS/TEMP] to the client, one log line naming the program`, async () => {
      const program = make();
      const proxy = await startProxy(exec(program));
      try {
        const { client, reply } = await login(proxy);
        client.destroy();
        assert.match(reply, /^-ERR \[SYS\/TEMP\] /);
        await proxy.waitForLog((l) => l['event'] === 'login');
        await backendProgramsExited(proxy);
        const lines = linesNaming(proxy, program);
        assert.equal(lines.length, 1, JSON.stringify(lines));
        assert.equal(lines[0]!['code'], 'E_BACKEND_EXEC');
        assert.match(String(lines[0]!['reason']), reason);
        assertNoChildren();
      } finally {
        await proxy.stop();
      }
    });
  }
});

describe('exec: the program is ended with its session', { timeout: 60_000 }, () => {
  test('a program that ignores EOF and SIGTERM gets SIGTERM 5 s after its session, SIGKILL 2 s later, and is reaped', async () => {
    const proxy = await startProxy(exec(serve, { IGNORE_TERM: '1' }));
    try {
      const { client, reply } = await login(proxy);
      assert.match(reply, /^\+OK/, proxy.logText().slice(-1_000));
      client.destroy();
      const exit = await proxy.waitForLog((l) => l['msg'] === 'backend program exited', { timeoutMs: 20_000 });
      assert.equal(exit['signal'], 'SIGKILL');
      assert.equal(exit['level'], 'warn');
      assert.match(String(exit['note']), /still running 5000 ms after its session ended, and ignored SIGTERM for 2000 ms/);
      assertNoChildren();
    } finally {
      await proxy.stop();
    }
  });

  test('shutdown ends every program and waits for it', async () => {
    const proxy = await startProxy(exec(serve));
    const { client, reply } = await login(proxy);
    assert.match(reply, /^\+OK/);
    await proxy.stop();
    client.destroy();
    assertNoChildren();
  });
});

describe("exec: the program's stderr", { timeout: 60_000 }, () => {
  test('is logged with its exit status, bounded (the rest counted, not kept), control bytes escaped', async () => {
    // 100 KB of stderr, then a crash mid-session: after the greeting and the login.
    const noisy = script('noisy.sh', `#!/bin/sh
printf '+OK noisy\\r\\n'
read capa; printf -- '-ERR\\r\\n'
read user; printf '+OK\\r\\n'
read pass; printf '+OK\\r\\n'
printf 'line one\\033[2J\\n' >&2
head -c 100000 /dev/zero | tr '\\0' x >&2
exit 9
`);
    const proxy = await startProxy(exec(noisy));
    try {
      const { client, reply } = await login(proxy);
      assert.match(reply, /^\+OK/);
      const exit = await proxy.waitForLog((l) => l['msg'] === 'backend program exited', { timeoutMs: 10_000 });
      client.destroy();
      assert.equal(exit['level'], 'warn');
      assert.equal(exit['exitCode'], 9);
      const stderr = String(exit['stderr']);
      assert.ok(stderr.startsWith('line one\\x1b[2J\\x0axxx'), stderr.slice(0, 40));
      // 2,048 octets kept; escaping may lengthen the text by the last escape's few characters.
      assert.ok(stderr.length <= 2_052, String(stderr.length));
      assert.equal(Number(exit['stderrDropped']) + 2_048, 100_000 + 'line one\x1b[2J\n'.length);
      await backendProgramsExited(proxy);
      assertNoChildren();
    } finally {
      await proxy.stop();
    }
  });
});

describe('exec: limits.max_backend_processes', { timeout: 60_000 }, () => {
  let proxy: TestProxy;
  before(async () => {
    proxy = await startProxy(exec(serve), 1);
  });
  after(async () => {
    await proxy?.stop();
  });

  test('a login beyond the cap gets -ERR [SYS/TEMP] and starts nothing; once a program has ended the next login works', async () => {
    const first = await login(proxy);
    assert.match(first.reply, /^\+OK/);
    const second = await login(proxy);
    second.client.destroy();
    assert.match(second.reply, /^-ERR \[SYS\/TEMP\] /);
    const refused = proxy.logs().find((l) => l['code'] === 'E_BACKEND_BUSY');
    assert.match(String(refused?.['reason']), /1 backend programs are running \(limits.max_backend_processes\)/);
    assert.equal(proxy.logs().filter((l) => l['msg'] === 'backend program started').length, 1);

    assert.match(await first.client.command('QUIT'), /^\+OK/);
    first.client.destroy();
    await backendProgramsExited(proxy);
    const third = await login(proxy);
    assert.match(third.reply, /^\+OK/);
    assert.match(await third.client.command('QUIT'), /^\+OK/);
    third.client.destroy();
    await backendProgramsExited(proxy);
    assertNoChildren();
  });
});

describe('exec: a program whose login failed gives its place back at once', { timeout: 60_000 }, () => {
  // Refuses any password but "right", and after EOF lingers (a server still in its failure delay,
  // a tarpit) until a signal ends it.
  const lingering = (): string =>
    script(
      'lingering.sh',
      `#!/bin/sh
printf '+OK lingering\\r\\n'
while IFS= read -r line; do
  case "$line" in
    CAPA*) printf -- '-ERR no CAPA\\r\\n' ;;
    "PASS right"*) printf '+OK\\r\\n' ;;
    PASS*) printf -- '-ERR wrong password\\r\\n' ;;
    QUIT*) printf '+OK bye\\r\\n'; exit 0 ;;
    *) printf '+OK\\r\\n' ;;
  esac
done
exec sleep 600
`,
    );

  /** USER alice and PASS `password` through `proxy`'s TLS port: the client and PASS's reply. */
  const attempt = async (proxy: TestProxy, password: string): Promise<{ client: RawClient; reply: string }> => {
    const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
    await client.readLine();
    assert.match(await client.command('USER alice'), /^\+OK/);
    return { client, reply: await client.command(`PASS ${password}`, 10_000) };
  };

  test('a guess the failed-login limits block starts no program', async () => {
    const running = await startProtected(
      { host: '127.0.0.1', port: 1 },
      {
        backendOptions: { address: { kind: 'exec', ...exec(lingering()) }, trustLoopback: undefined },
        rateLimit: { userIp: { maxFailures: 1, windowMs: 3_600_000, blockMs: 3_600_000 } },
      },
    );
    try {
      const guesses: string[] = [];
      for (const password of ['wrong-1', 'wrong-2']) {
        const { client, reply } = await attempt(running.proxy, password);
        client.destroy();
        guesses.push(reply);
      }
      assert.deepEqual(guesses, ['-ERR [AUTH] Authentication failed', '-ERR [SYS/TEMP] Too many failed logins, try again later']);
      assert.equal(running.proxy.logs().filter((l) => l['msg'] === 'backend program started').length, 1);
      await backendProgramsExited(running.proxy);
    } finally {
      await running.stop();
    }
  });

  test('with one place, a login right after a refused one is served: the refused program gets SIGTERM 250 ms after its login, not 5 s', async () => {
    const proxy = await startProxy(exec(lingering()), 1);
    try {
      const refused = await attempt(proxy, 'wrong');
      refused.client.destroy();
      assert.equal(refused.reply, '-ERR [AUTH] Authentication failed');
      const served = await attempt(proxy, 'right');
      assert.equal(served.reply, '+OK Logged in', proxy.logText().slice(-2_000));
      assert.match(await served.client.command('QUIT'), /^\+OK/);
      served.client.destroy();
      const exits = proxy.logs().filter((l) => l['msg'] === 'backend program exited');
      const first = exits[0] ?? (await proxy.waitForLog((l) => l['msg'] === 'backend program exited'));
      assert.equal(first['signal'], 'SIGTERM');
      assert.equal(first['level'], 'info', 'ending the program of a failed login is routine, not a warning');
      assert.match(String(first['note']), /^still running 250 ms after its session ended$/);
      await backendProgramsExited(proxy);
      assertNoChildren();
    } finally {
      await proxy.stop();
    }
  });
});

describe("exec: the program's environment", { timeout: 60_000 }, () => {
  test("the client's address as ucspi-tcp, CGI and xinetd name it, the configured variables, and nothing of popwarden's own", async () => {
    const dump = join(dir, 'env.txt');
    process.env['POPWARDEN_TEST_SECRET'] = 'must-not-leak';
    const proxy = await startProxy({ ...exec(serve, { ENV_DUMP: dump, LANG: 'C' }), cwd: dir });
    try {
      const { client, reply } = await login(proxy);
      assert.match(reply, /^\+OK/);
      const clientPort = client.socket.localPort;
      assert.match(await client.command('QUIT'), /^\+OK/);
      client.destroy();
      await backendProgramsExited(proxy);
      const env = Object.fromEntries(
        readFileSync(dump, 'utf8')
          .split('\n')
          .filter((l) => l !== '')
          .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
      );
      assert.deepEqual(
        {
          PROTO: env['PROTO'],
          TCPREMOTEIP: env['TCPREMOTEIP'],
          TCPREMOTEPORT: env['TCPREMOTEPORT'],
          TCPLOCALIP: env['TCPLOCALIP'],
          TCPLOCALPORT: env['TCPLOCALPORT'],
          REMOTE_ADDR: env['REMOTE_ADDR'],
          REMOTE_PORT: env['REMOTE_PORT'],
          REMOTE_HOST: env['REMOTE_HOST'],
          LANG: env['LANG'],
          PWD: env['PWD'],
        },
        {
          PROTO: 'TCP',
          TCPREMOTEIP: '127.0.0.1',
          TCPREMOTEPORT: String(clientPort),
          TCPLOCALIP: '127.0.0.1',
          TCPLOCALPORT: String(proxy.tlsPort),
          REMOTE_ADDR: '127.0.0.1',
          REMOTE_PORT: String(clientPort),
          REMOTE_HOST: '127.0.0.1',
          LANG: 'C',
          PWD: dir,
        },
      );
      // The shell adds PWD (and may add SHLVL or _); nothing else comes from popwarden's environment.
      const expected = new Set(['PATH', 'PROTO', 'TCPREMOTEIP', 'TCPREMOTEPORT', 'TCPLOCALIP', 'TCPLOCALPORT', 'REMOTE_ADDR', 'REMOTE_PORT', 'REMOTE_HOST', 'LANG', 'ENV_DUMP', 'PWD', 'SHLVL', '_', 'OLDPWD']);
      assert.deepEqual(Object.keys(env).filter((name) => !expected.has(name)), []);
      assert.ok(!readFileSync(dump, 'utf8').includes('must-not-leak'));
    } finally {
      delete process.env['POPWARDEN_TEST_SECRET'];
      await proxy.stop();
    }
  });
});
