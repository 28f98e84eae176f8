/**
 * Resource abuse at the front door: stalled TLS handshakes, a pipelined flood from a client that
 * never reads or that never logs in, slowloris. SECURITY-TESTS.md.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as netConnect, type Socket } from 'node:net';
import { startFakeBackend, legacyScript, type FakeBackend } from '../harness/fake-backend.js';
import { startTestProxy, type TestProxy } from '../harness/popwarden.js';
import { RawClient } from '../harness/raw-client.js';
import { startProtected } from '../harness/redis.js';
import { DEFAULT_MAX_COMMANDS_BEFORE_LOGIN, DEFAULT_MAX_NEW_CONNECTIONS_PER_IP_PER_MINUTE } from '../../src/config/limits.js';

const closedWithin = (socket: Socket, ms: number): Promise<boolean> =>
  new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });

describe('front-door abuse', { timeout: 60_000 }, () => {
  let backend: FakeBackend;
  let proxy: TestProxy;

  before(async () => {
    backend = await startFakeBackend(legacyScript());
    proxy = await startTestProxy({
      backend: { host: backend.host, port: backend.port },
      timeouts: { preAuthMs: 2_000, clientWriteStallMs: 1_000 },
      // Off here: the floods below measure the session's own serving loop, which the budget
      // would cut short; the next test has it at its default.
      limits: { maxCommandsBeforeLogin: 0 },
    });
  });
  after(async () => {
    await proxy.stop();
    await backend.stop();
  });

  test('stalled TLS handshakes are closed at the handshake timeout, not Node\'s 120 s (X-03)', async () => {
    const sockets = await Promise.all(
      Array.from({ length: 50 }, () => {
        const socket = netConnect({ host: proxy.host, port: proxy.tlsPort });
        socket.on('error', () => undefined);
        return new Promise<Socket>((resolve) => socket.once('connect', () => resolve(socket)));
      }),
    );
    // Half a ClientHello record header, then nothing.
    for (const socket of sockets) socket.write(Buffer.from([0x16, 0x03, 0x01]));
    // The test proxy's handshake timeout is 5 s.
    const closed = await Promise.all(sockets.map((socket) => closedWithin(socket, 8_000)));
    for (const socket of sockets) socket.destroy();
    assert.ok(closed.every(Boolean), `${closed.filter((c) => !c).length} of 50 still open`);
    // A real client still gets through meanwhile.
    const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
    assert.match(await client.readLine(), /^\+OK/);
    client.destroy();
  });

  test('a client that pipelines without reading is throttled, then dropped (X-07)', async () => {
    const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
    await client.readLine();
    client.socket.pause();
    const flood = Buffer.alloc(48 * 1024 * 1024).fill('CAPA\r\n'); // 48 MiB of commands
    client.write(flood);
    // Look before the 1 s write-stall timeout can close the connection (and empty the buffer).
    // The wait is the subject: a popwarden that kept reading would have taken the flood by then.
    await new Promise((resolve) => setTimeout(resolve, 500));
    // popwarden stopped reading long before serving 6 MiB of CAPA (each reply is ~100 bytes).
    assert.ok(client.socket.writableLength > 0, 'the client could not even hand its flood to the kernel');
    // Whichever fires first: the write stall (1 s) destroys at once; the login deadline (2 s)
    // ends with a farewell that this client never reads, so the socket goes after the 5 s flush.
    const closed = await client.closedWithin(10_000);
    client.destroy();
    assert.equal(closed, true, 'closed by the write-stall or login deadline');
    assert.match(proxy.logText(), /"reason":"(client-write-stall|pre-auth-timeout)"/);
  });

  test('a pipelined flood is served a bounded number of commands per turn of the event loop (X-07, issue 14.3)', async () => {
    // Over loopback TCP the kernel takes every reply at once, so no backpressure ever makes the
    // session wait: without a bound of its own, it would serve all 4,000 commands of one read in
    // one turn, and every other client (and the timers) would wait for it.
    const commands = 4_000;
    const client = await RawClient.plain(proxy.host, proxy.stlsPort);
    await client.readLine();
    let turns = 0;
    let counting = true;
    const count = (): void => {
      turns += 1;
      if (counting) setImmediate(count);
    };
    setImmediate(count);
    client.write('CAPA\r\n'.repeat(commands));
    for (let i = 0; i < commands; i++) await client.readUntil('\r\n.\r\n');
    counting = false;
    client.destroy();
    // MAX_QUEUED_CLIENT_LINES (32) commands a turn at most: 125 turns; half of that as the bound.
    assert.ok(turns >= commands / 64, `${commands} pipelined commands were served in ${turns} turns of the event loop`);
  });

  test('a client that sends command after command without logging in is closed at limits.max_commands_before_login (issue 14.3)', async () => {
    // The schema's defaults: the bound must hold without any configuration.
    const defaults = await startTestProxy({ backend: { host: backend.host, port: backend.port } });
    try {
      const budget = DEFAULT_MAX_COMMANDS_BEFORE_LOGIN;
      const client = await RawClient.plain(defaults.host, defaults.stlsPort);
      await client.readLine();
      client.write('CAPA\r\n'.repeat(2_000));
      assert.equal(await client.closedWithin(5_000), true, 'still open after 2,000 CAPA before login');
      const text = client.all().toString('latin1');
      client.destroy();
      assert.equal(text.split('\r\n.\r\n').length - 1, budget, 'CAPA replies before the close');
      assert.ok(text.endsWith('\r\n-ERR Too many commands without logging in, closing connection\r\n'), text.slice(-120));
      await defaults.waitForLog((l) => l['msg'] === 'session closed' && l['reason'] === 'too-many-commands-before-login');
    } finally {
      await defaults.stop();
    }
  });

  test('an address that keeps connecting is refused at limits.max_new_connections_per_ip_per_minute, before any TLS work (issue 14.3)', async () => {
    // The per-second burst off, so the per-minute bound is the one that meets the flood.
    // startProtected: the gate popwarden builds from its config (createProtection), limiter in memory.
    const guarded = await startProtected(backend, { limits: { maxNewConnectionsPerIp: 0, maxNewConnectionsPerIpPerMinute: DEFAULT_MAX_NEW_CONNECTIONS_PER_IP_PER_MINUTE } });
    const limited = guarded.proxy;
    const flooder = '127.14.0.1';
    const replies: string[] = [];
    try {
      const began = Date.now();
      for (let i = 0; i < 100; i++) {
        const client = await RawClient.plain(limited.host, limited.stlsPort, flooder);
        replies.push(await client.readLine().catch(() => 'closed'));
        client.destroy();
      }
      // The minute refills one connection a second: whatever this machine's speed, no more than that got in.
      const refill = Math.ceil((Date.now() - began) / 1000);
      const greeted = replies.filter((r) => r.startsWith('+OK')).length;
      assert.ok(greeted >= DEFAULT_MAX_NEW_CONNECTIONS_PER_IP_PER_MINUTE && greeted <= DEFAULT_MAX_NEW_CONNECTIONS_PER_IP_PER_MINUTE + refill, `${greeted} of 100 greeted in ${refill} s`);
      assert.deepEqual([...new Set(replies.filter((r) => !r.startsWith('+OK')))], ['-ERR [SYS/TEMP] Too many connections from your address, try again later']);
      // The TLS port shares the bound and closes without a handshake: the client sees a reset, not a certificate.
      await assert.rejects(RawClient.tls(limited.host, limited.tlsPort, limited.caFile, flooder));
      // Another address is untouched.
      const other = await RawClient.tls(limited.host, limited.tlsPort, limited.caFile, '127.14.0.2');
      assert.match(await other.readLine(), /^\+OK/);
      other.destroy();
      // One log line for the burst on each port, not one per refusal: the log is no amplifier for the flood.
      await limited.waitForLog((l) => l['msg'] === 'connection refused' && l['reason'] === 'too_many_connections_per_minute' && l['peer'] === flooder);
      const lines = limited.logs().filter((l) => l['msg'] === 'connection refused' && l['peer'] === flooder);
      assert.deepEqual(lines.map((l) => l['listener']).sort(), [...new Set(lines.map((l) => l['listener']))].sort(), `${lines.length} lines for ${100 - greeted + 1} refusals`);
      assert.equal(lines.length, 2);
    } finally {
      await guarded.stop();
    }
    // The burst's tail reaches the log too, once its minute is over or, as here, its listener
    // closes: the refusals after the first line on the STLS port (one on the TLS port, no tail).
    const refusedOnStls = replies.filter((r) => !r.startsWith('+OK')).length;
    const tails = limited.logs().filter((l) => l['msg'] === 'connection refusals ended' && l['peer'] === flooder);
    assert.deepEqual(tails.map((l) => [l['listener'], l['reason'], l['refusedQuietly']]), [['stls:test', 'too_many_connections_per_minute', refusedOnStls - 1]]);
  });

  test('a refusal of an address\'s rate on the TLS port is held before its bare close (a tarpit), and shutdown lets every held one go (issue 14.3)', async () => {
    // A hold far longer than the test: the refused connection stays open until popwarden stops.
    const guarded = await startProtected(backend, { limits: { maxNewConnectionsPerIp: 1, maxNewConnectionsPerIpPerMinute: 0 }, refusalHoldMs: 600_000 });
    const flooder = '127.14.0.3';
    const first = await RawClient.tls(guarded.proxy.host, guarded.proxy.tlsPort, guarded.proxy.caFile, flooder);
    assert.match(await first.readLine(), /^\+OK/);
    const refused = await RawClient.plain(guarded.proxy.host, guarded.proxy.tlsPort, flooder);
    try {
      await guarded.proxy.waitForLog((l) => l['msg'] === 'connection refused' && l['reason'] === 'too_many_connections' && l['peer'] === flooder);
      assert.equal(await refused.closedWithin(500), false, 'closed at once: not held');
      first.destroy();
    } finally {
      // Without the held refusal let go, the listener would not close for ten minutes.
      await guarded.stop();
    }
    assert.equal(await refused.closedWithin(2_000), true);
    assert.equal(refused.all().length, 0);
  });

  test('a client that trickles bytes is closed at the absolute login deadline (X-01)', async () => {
    const client = await RawClient.plain(proxy.host, proxy.stlsPort);
    await client.readLine();
    const started = Date.now();
    const trickle = setInterval(() => client.write('C'), 200);
    try {
      assert.equal(await client.closedWithin(5_000), true);
      assert.ok(Date.now() - started < 3_000, 'closed at the 2 s deadline although bytes kept coming');
    } finally {
      clearInterval(trickle);
    }
  });
});
