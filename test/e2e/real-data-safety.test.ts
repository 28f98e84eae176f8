/**
 * Data safety against a real Dovecot: a client that drops without QUIT deletes nothing, QUIT
 * commits its DELE (D-07), and when the Dovecot pop3 process serving a RETR of the ~5 MB message
 * is killed mid-transfer, neither a raw client nor Python's poplib ever sees the message end
 * (D-01). Each test gets its own Dovecot, so a committed DELE cannot leak into another test.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { fetchWithPoplib } from '../harness/clients.js';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';
import { dotStuff, sampleMaildrop } from '../harness/maildrop.js';
import { startTestProxy, type TestProxy } from '../harness/popwarden.js';
import { RawClient } from '../harness/raw-client.js';

const { alice } = sampleMaildrop();
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls `probe` every 20 ms until it returns a value other than undefined, or fails after
 * `timeoutMs`. Only for what announces itself nowhere: a process appearing under Dovecot's
 * master and its write counter in /proc. Dovecot's log lines are awaited (dovecotSessionEnds).
 */
async function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Waits for Dovecot to log the end of a session of `user`; its end-of-session lines so far. */
async function dovecotSessionEnds(dovecot: Dovecot, user: string): Promise<{ reason: string; deleted: number; total: number }[]> {
  const ends = await dovecot.whenLogged(() => {
    const found = sessionEnds(dovecot, user);
    return found.length > 0 ? found : undefined;
  });
  if (ends === undefined) throw new Error('timed out waiting for Dovecot to end the session');
  return ends;
}

/** Dovecot's end-of-session lines for `user`: why it ended and how many messages it expunged. */
function sessionEnds(dovecot: Dovecot, user: string): { reason: string; deleted: number; total: number }[] {
  const text = readFileSync(dovecot.logFile, 'utf8');
  const ends: { reason: string; deleted: number; total: number }[] = [];
  const re = new RegExp(`pop3\\(${user}\\)<\\d+><[^>]*>: Info: Disconnected: (.*?) top=\\d+/\\d+, retr=\\d+/\\d+, del=(\\d+)/(\\d+)`, 'g');
  for (const m of text.matchAll(re)) ends.push({ reason: m[1]!, deleted: Number(m[2]), total: Number(m[3]) });
  return ends;
}

/** The `pop3` processes that Dovecot master `masterPid` has forked (its direct children only). */
function pop3Children(masterPid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(masterPid), '-x', 'pop3'], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l !== '')
      .map(Number);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

/** Bytes process `pid` has passed to write(2) and friends so far (its sockets included). */
function bytesWritten(pid: number): number {
  return Number(/^wchar: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))![1]);
}

/**
 * A relay between popwarden and Dovecot that passes the backend's bytes on at most
 * `bytesPerTick` every `tickMs` (changeable with setRate) and records what popwarden sent.
 * Without it the kill truncates nothing: on loopback (MTU 65536, Linux's default tcp_wmem max of
 * 4 MiB) the kernel buffers of the two links hold the whole ~5 MB message (measured: popwarden's
 * send queue to a client that reads nothing 2.8 MB, its receive queue from Dovecot 1.1 MB,
 * Dovecot's send queue 1.1 MB), so Dovecot has written the message to its end before any kill
 * lands. Behind this relay Dovecot's own send buffer (~4 MB) is all it can fill, and the rest of
 * the message is still unwritten when it dies. FIN and errors pass through as they arrive.
 */
async function startSlowLink(
  targetHost: string,
  targetPort: number,
  bytesPerTick: number,
  tickMs: number,
): Promise<{ host: string; port: number; sent(): Buffer; setRate(bytesPerTick: number): void; stop(): Promise<void> }> {
  let rate = bytesPerTick;
  const sentByPopwarden: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const server = net.createServer((client) => {
    const upstream = net.connect({ host: targetHost, port: targetPort });
    sockets.add(client).add(upstream);
    client.on('data', (d: Buffer) => {
      sentByPopwarden.push(Buffer.from(d));
      upstream.write(d);
    });
    client.on('end', () => upstream.end());
    // No 'data' listener upstream: the stream stays paused and the timer pulls at most
    // bytesPerTick per tick, so the kernel buffer towards Dovecot stays full and Dovecot waits.
    upstream.pause();
    const timer = setInterval(() => {
      let budget = rate;
      while (budget > 0) {
        const chunk = (upstream.read(budget) ?? upstream.read()) as Buffer | null;
        if (chunk === null) break;
        client.write(chunk);
        budget -= chunk.length;
      }
    }, tickMs);
    timers.add(timer);
    upstream.on('end', () => {
      clearInterval(timer);
      client.end();
    });
    for (const [a, b] of [[client, upstream], [upstream, client]] as const) {
      a.on('error', () => b.destroy());
      a.on('close', () => {
        sockets.delete(a);
        clearInterval(timer);
        if (a === client) b.destroy();
      });
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, resolve);
  });
  return {
    host: '127.0.0.1',
    port: (server.address() as net.AddressInfo).port,
    sent: () => Buffer.concat(sentByPopwarden),
    setRate: (n) => {
      rate = n;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        for (const t of timers) clearInterval(t);
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('data safety with a real Dovecot', { timeout: 180_000 }, () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  /** A fresh Dovecot ('all') with popwarden in front of it, both stopped in after(). */
  const freshRig = async (): Promise<{ dovecot: Dovecot; proxy: TestProxy }> => {
    const dovecot = await startDovecot({ profile: 'all' });
    cleanups.push(() => dovecot.stop());
    const proxy = await startTestProxy({ backend: { host: dovecot.host, port: dovecot.port } });
    cleanups.push(() => proxy.stop());
    return { dovecot, proxy };
  };

  const loggedIn = async (proxy: TestProxy, port = proxy.tlsPort): Promise<RawClient> => {
    const client = await RawClient.tls(proxy.host, port, proxy.caFile);
    await client.readLine();
    assert.equal(await client.command('USER alice'), '+OK Send PASS');
    assert.equal(await client.command(`PASS ${alice.pass}`, 10_000), '+OK Logged in');
    return client;
  };

  /** A new session sees all of alice's messages, by count and by UIDL. */
  const assertMaildropIntact = async (proxy: TestProxy): Promise<void> => {
    const client = await loggedIn(proxy);
    assert.match(await client.command('STAT'), /^\+OK 3 \d+$/);
    const { status, body } = await client.multi('UIDL');
    assert.match(status, /^\+OK/);
    assert.equal(body.toString('latin1'), alice.messages.map((m) => `${m.n} ${m.uidl}\r\n`).join('') + '.\r\n');
    assert.match(await client.command('QUIT'), /^\+OK/);
    await client.closedWithin(5_000);
  };

  describe('D-07: DELE is committed by QUIT and by nothing else', () => {
    test('client closes (TLS close_notify + FIN) after DELE 1: nothing deleted', async () => {
      const { dovecot, proxy } = await freshRig();
      const client = await loggedIn(proxy);
      assert.match(await client.command('DELE 1'), /^\+OK/);
      client.end();
      const [end] = await dovecotSessionEnds(dovecot, 'alice');
      assert.equal(end!.deleted, 0, 'Dovecot expunged nothing');
      assert.doesNotMatch(end!.reason, /Logged out/, 'Dovecot saw no QUIT');
      await assertMaildropIntact(proxy);
    });

    test('client resets the TCP connection (RST) after DELE 1: nothing deleted', async () => {
      const { dovecot, proxy } = await freshRig();
      const client = await RawClient.plain(proxy.host, proxy.stlsPort);
      await client.readLine();
      assert.match(await client.command('STLS'), /^\+OK/);
      const tcp = client.socket;
      await client.upgrade(proxy.caFile);
      assert.equal(await client.command('USER alice'), '+OK Send PASS');
      assert.equal(await client.command(`PASS ${alice.pass}`, 10_000), '+OK Logged in');
      assert.match(await client.command('DELE 1'), /^\+OK/);
      tcp.resetAndDestroy();
      const [end] = await dovecotSessionEnds(dovecot, 'alice');
      assert.equal(end!.deleted, 0);
      assert.doesNotMatch(end!.reason, /Logged out/);
      await assertMaildropIntact(proxy);
    });

    test('QUIT after DELE 1 commits: the next session has messages 2 and 3 only', async () => {
      const { dovecot, proxy } = await freshRig();
      const client = await loggedIn(proxy);
      assert.match(await client.command('DELE 1'), /^\+OK/);
      assert.match(await client.command('QUIT'), /^\+OK/);
      assert.ok(await client.closedWithin(5_000));
      const [end] = await dovecotSessionEnds(dovecot, 'alice');
      assert.deepEqual(end, { reason: 'Logged out', deleted: 1, total: 3 });
      const next = await loggedIn(proxy);
      assert.match(await next.command('STAT'), /^\+OK 2 \d+$/);
      const { body } = await next.multi('UIDL');
      assert.equal(body.toString('latin1'), `1 ${alice.messages[1]!.uidl}\r\n2 ${alice.messages[2]!.uidl}\r\n.\r\n`);
      const { body: first } = await next.multi('RETR 1', 30_000);
      assert.ok(first.equals(dotStuff(alice.messages[1]!.bytes)));
      next.destroy();
    });
  });

  describe('D-01: kill -9 of the Dovecot pop3 process during RETR of the 5 MB message', () => {
    const big = alice.messages[1]!;
    const stuffed = dotStuff(big.bytes); // what a complete RETR body looks like on the wire
    const body = stuffed.subarray(0, stuffed.length - 3); // without the ".\r\n" terminator

    /**
     * Popwarden → slow link (400 KB/s) → Dovecot. Waits for the pop3 process that serves alice,
     * then for it to be `killAfter` bytes into its writes, checks it has not written the whole
     * message, and SIGKILLs it (only that process, a direct child of this test's Dovecot master).
     * Then the link runs at full speed, so what Dovecot wrote before it died reaches popwarden
     * at once; it is the missing rest of the message that the test is about.
     */
    const rigWithSlowBackend = async (): Promise<{
      dovecot: Dovecot;
      proxy: TestProxy;
      link: Awaited<ReturnType<typeof startSlowLink>>;
      killMidRetr(killAfter?: number): Promise<number>;
    }> => {
      const dovecot = await startDovecot({ profile: 'all' });
      cleanups.push(() => dovecot.stop());
      const link = await startSlowLink(dovecot.host, dovecot.port, 8 * 1024, 20);
      cleanups.push(() => link.stop());
      const proxy = await startTestProxy({ backend: { host: link.host, port: link.port } });
      cleanups.push(() => proxy.stop());
      const killMidRetr = async (killAfter = 256 * 1024): Promise<number> => {
        const pid = await waitFor('the pop3 process', () => pop3Children(dovecot.pid)[0], 15_000);
        const start = bytesWritten(pid);
        const written = await waitFor('RETR 2 to be under way', () => {
          const n = bytesWritten(pid) - start;
          return n >= killAfter ? n : undefined;
        }, 30_000);
        assert.ok(written < stuffed.length - 64 * 1024, `Dovecot had already written ${written} of ${stuffed.length} bytes`);
        assert.deepEqual(pop3Children(dovecot.pid), [pid], 'one pop3 process, the one serving alice');
        process.kill(pid, 'SIGKILL');
        link.setRate(1024 * 1024);
        return written;
      };
      return { dovecot, proxy, link, killMidRetr };
    };

    test('raw client: the bytes received are a strict prefix of the body, never the terminator', async () => {
      const { dovecot, proxy, link, killMidRetr } = await rigWithSlowBackend();
      const client = await loggedIn(proxy);
      client.write('RETR 2\r\n');
      const written = await killMidRetr();
      assert.ok(await client.closedWithin(15_000), 'popwarden closes the client after the backend died');
      const all = client.unread();
      const eol = all.indexOf('\r\n');
      assert.match(all.subarray(0, eol).toString('latin1'), /^\+OK \d+ octets$/);
      const got = all.subarray(eol + 2);
      assert.ok(got.length > 0, 'some of the body had been relayed before the cut');
      assert.ok(got.length < body.length, `got ${got.length} of ${body.length} body bytes`);
      assert.ok(got.length <= written, 'no byte that Dovecot did not write');
      assert.ok(got.equals(body.subarray(0, got.length)), 'what arrived is exactly the start of the message: nothing spliced in');
      assert.equal(got.includes('\r\n.\r\n'), false, 'no terminator after the cut');
      assert.equal(got.subarray(-3).toString('latin1') === '.\r\n', false);
      assert.doesNotMatch(got.toString('latin1'), /-ERR/);
      assert.doesNotMatch(link.sent().toString('latin1'), /QUIT/i, 'popwarden sent no QUIT to the backend');
      // Nothing was lost: a new pop3 process serves the next session with all three messages.
      await assertMaildropIntact(proxy);
      assert.equal(sessionEnds(dovecot, 'alice').every((e) => e.deleted === 0), true);
    });

    test('Python poplib raises instead of returning the truncated message', async () => {
      const { proxy, link, killMidRetr } = await rigWithSlowBackend();
      const fetching = fetchWithPoplib({
        host: proxy.host, port: proxy.tlsPort, mode: 'implicit', user: alice.user, pass: alice.pass,
        caFile: proxy.caFile, auth: 'user', timeoutMs: 60_000,
      });
      await killMidRetr();
      const r = await fetching;
      assert.equal(r.ok, false, `poplib returned normally:\n${r.stderr}`);
      assert.equal(r.exitCode, 1, r.stderr);
      // The harness script stops at the first exception; message 1 came whole, message 2 never.
      assert.equal(r.messages.length, 1, r.stderr);
      assert.ok(r.messages[0]!.equals(alice.messages[0]!.bytes));
      assert.match(r.stderr, /poplib_fetch: (error_proto|SSLEOFError|SSLError|OSError|ConnectionResetError)/, r.stderr);
      assert.doesNotMatch(r.stderr, /retr 2: \d+ octets/, 'poplib never reported message 2 as complete');
      assert.doesNotMatch(link.sent().toString('latin1'), /QUIT/i);
    });
  });
});
