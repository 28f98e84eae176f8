/**
 * limits.max_sessions and limits.max_handshakes: bounds for the whole process, whatever the number
 * of client addresses (issue 9, point 6). Clients come from several loopback addresses
 * (127.0.0.x), each well under every per-address bound. A full bound makes room by closing the
 * oldest connection that has not got anywhere (issue 14.3): the clock popwarden reads for their
 * ages is the test's, moved on explicitly, so no test waits for a second to pass.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect as netConnect, type Socket } from 'node:net';
import { legacyScript, startFakeBackend, type FakeBackend } from '../harness/fake-backend.js';
import { servedFingerprint, startTestProxy, type ProxyOverrides } from '../harness/popwarden.js';
import { RawClient } from '../harness/raw-client.js';
import { startProtected } from '../harness/redis.js';
import { NO_METRICS, type Metrics } from '../../src/observability/metrics.js';
import { ConnectionLimits } from '../../src/net/connection-limits.js';
import { CidrList } from '../../src/net/cidr.js';
import { EVICTION_MIN_AGE_MS } from '../../src/config/limits.js';
import { sampleMaildrop } from '../harness/maildrop.js';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';
import { Session } from '../../src/session/session.js';

const { alice, bob } = sampleMaildrop();

/** Records connectionRefused events as "LISTENER REASON", and evicted handshakes as "LISTENER handshake evicted". */
function refusalRecorder(refusals: string[]): Metrics {
  return {
    ...NO_METRICS,
    connectionRefused: (listener, reason) => void refusals.push(`${listener} ${reason}`),
    tlsHandshake: (listener, result) => void (result === 'evicted' && refusals.push(`${listener} handshake ${result}`)),
  };
}

/** A clock the test moves: popwarden's idea of how old each connection is. */
function testClock(): { now: () => number; advance: (ms: number) => void } {
  let now = 1_000_000;
  return { now: () => now, advance: (ms) => void (now += ms) };
}

/** The max_sessions bound alone, as the process builds it, with the test's clock. */
function sessionBound(maxSessions: number): ConnectionLimits {
  const none = new CidrList([]);
  return new ConnectionLimits({ maxSessions, maxSessionsPerIp: 20, maxNewConnectionsPerIp: 1_000, ipv6PrefixLength: 64, allow: none, deny: none });
}

/** The owner's login over implicit TLS, and a STAT that proves the session works. */
async function ownerLogin(host: string, port: number, caFile: string): Promise<void> {
  const owner = await loggedInSession(host, port, caFile, '127.0.0.99');
  try {
    assert.match(await owner.command('STAT'), /^\+OK/);
  } finally {
    owner.destroy();
  }
}

/** A session over implicit TLS from `source`, logged in (TRANSACTION) as `account` (default alice). */
async function loggedInSession(host: string, port: number, caFile: string, source: string, account = alice): Promise<RawClient> {
  const client = await RawClient.tls(host, port, caFile, source);
  assert.match(await client.readLine(), /^\+OK/);
  assert.match(await client.command(`USER ${account.user}`), /^\+OK/);
  assert.match(await client.command(`PASS ${account.pass}`), /^\+OK/);
  return client;
}

/** Resolves when `socket` is closed by the other end. */
const closed = (socket: Socket): Promise<void> => (socket.destroyed ? Promise.resolve() : new Promise((resolve) => socket.once('close', () => resolve())));

/** A TCP connection that starts a ClientHello record and then stalls. */
async function stalledHandshake(port: number, localAddress: string): Promise<Socket> {
  const socket = netConnect({ host: '127.0.0.1', port, localAddress });
  socket.on('error', () => undefined);
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.write(Buffer.from([0x16, 0x03, 0x01]));
  return socket;
}

describe('process-wide bounds', { timeout: 60_000 }, () => {
  let backend: FakeBackend;
  before(async () => {
    backend = await startFakeBackend(legacyScript());
  });
  after(async () => {
    await backend?.stop();
  });
  /** popwarden in front of the backend with the test's clock, recording refusals and evictions. */
  const startWithClock = async (overrides: Pick<ProxyOverrides, 'limits' | 'gate' | 'authFailureDelayMs'>) => {
    const refusals: string[] = [];
    const clock = testClock();
    const proxy = await startTestProxy({ backend: { host: backend.host, port: backend.port }, ...overrides, metrics: refusalRecorder(refusals), now: clock.now });
    return { proxy, refusals, clock };
  };

  it('limits.max_sessions: connections from several addresses are bounded together, with -ERR [SYS/TEMP] on the STLS port and a bare close on the TLS port', async () => {
    const refusals: string[] = [];
    const { proxy, stop } = await startProtected(backend, {
      limits: { maxSessions: 4, maxSessionsPerIp: 20, maxNewConnectionsPerIp: 1_000 },
      metrics: refusalRecorder(refusals),
      // A clock that stands still: every session stays under the eviction floor, however slow the machine.
      now: testClock().now,
    });
    const clients: RawClient[] = [];
    try {
      for (const source of ['127.0.0.71', '127.0.0.71', '127.0.0.72', '127.0.0.73']) {
        const client = await RawClient.plain(proxy.host, proxy.stlsPort, source);
        clients.push(client);
        assert.match(await client.readLine(), /^\+OK/, source);
      }
      for (const source of ['127.0.0.74', '127.0.0.75', '127.0.0.71']) {
        const client = await RawClient.plain(proxy.host, proxy.stlsPort, source);
        clients.push(client);
        assert.equal(await client.readLine(), '-ERR [SYS/TEMP] Server busy, try again later', source);
        assert.equal(await client.closedWithin(2_000), true);
      }
      const onTls = await RawClient.plain(proxy.host, proxy.tlsPort, '127.0.0.76');
      clients.push(onTls);
      assert.equal(await onTls.closedWithin(2_000), true);
      assert.equal(onTls.all().length, 0, 'no byte before the ServerHello the client waits for');
      assert.deepEqual(refusals, ['stls:test max_sessions', 'stls:test max_sessions', 'stls:test max_sessions', 'tls:test max_sessions']);
    } finally {
      for (const client of clients) client.destroy();
      await stop();
    }
  });

  it('limits.max_handshakes: handshakes in progress from several addresses are bounded together; a fresh flood (under the age floor) is refused, on the TLS port and at STLS', async () => {
    const { proxy, refusals, clock } = await startWithClock({ limits: { maxHandshakes: 3, maxHandshakesPerIp: 10 } });
    const stalled: Socket[] = [];
    try {
      for (const source of ['127.0.0.81', '127.0.0.82', '127.0.0.83']) stalled.push(await stalledHandshake(proxy.tlsPort, source));
      const over = await RawClient.plain(proxy.host, proxy.tlsPort, '127.0.0.84');
      assert.equal(await over.closedWithin(2_000), true);
      assert.equal(over.all().length, 0);
      // STLS shares the bound: +OK, then the upgrade is refused before any TLS work.
      await assert.rejects(servedFingerprint(proxy.stlsPort, { stls: true }));
      assert.deepEqual(refusals, ['tls:test max_handshakes']);
      clock.advance(EVICTION_MIN_AGE_MS - 1);
      const stillFresh = await RawClient.plain(proxy.host, proxy.tlsPort, '127.0.0.85');
      assert.equal(await stillFresh.closedWithin(2_000), true);
      assert.deepEqual(refusals, ['tls:test max_handshakes', 'tls:test max_handshakes']);
      for (const socket of stalled) assert.equal(socket.destroyed, false, 'younger than the floor, none is evicted');
    } finally {
      for (const socket of stalled) socket.destroy();
      await proxy.stop();
    }
  });

  it('limits.max_handshakes full of stalled handshakes: the oldest is evicted (closed, logged, counted) and the owner logs in', async () => {
    // 17 places: 16 for strangers, 1 kept for returning clients (RETURNING_CLIENTS_SHARE_DIVISOR).
    const { proxy, refusals, clock } = await startWithClock({ limits: { maxHandshakes: 17, maxHandshakesPerIp: 2 } });
    const stalled: Socket[] = [];
    try {
      // 8 addresses, each at its own bound of 2: together they fill the 16 places strangers may take.
      for (let i = 0; i < 16; i++) stalled.push(await stalledHandshake(proxy.tlsPort, `127.0.0.${81 + (i >> 1)}`));
      clock.advance(EVICTION_MIN_AGE_MS);
      await ownerLogin(proxy.host, proxy.tlsPort, proxy.caFile);
      await closed(stalled[0]!);
      assert.deepEqual(refusals, ['tls:test handshake evicted']);
      for (const socket of stalled.slice(1)) assert.equal(socket.destroyed, false, 'only the oldest makes room');
      const line = proxy.logs().filter((l) => l['msg'] === 'TLS handshake failed');
      assert.equal(line.length, 1, JSON.stringify(line));
      assert.equal(line[0]!['reason'], 'evicted');
      assert.equal(line[0]!['peer'], '127.0.0.81');
    } finally {
      for (const socket of stalled) socket.destroy();
      await proxy.stop();
    }
  });

  it('limits.max_handshakes full of stalled STLS handshakes: the oldest is evicted too, and the owner logs in on the TLS port', async () => {
    // The slowloris of issue 14.3 through the other door: STLS on the plain port, then a stalled
    // ClientHello. Were these handshakes never evictable, they would hold the shared bound for a
    // whole timeouts.tls_handshake and lock every TLS client out, on both ports.
    const { proxy, refusals, clock } = await startWithClock({ limits: { maxHandshakes: 17, maxHandshakesPerIp: 2 } });
    const stalled: RawClient[] = [];
    try {
      for (let i = 0; i < 16; i++) {
        const client = await RawClient.plain(proxy.host, proxy.stlsPort, `127.0.0.${81 + (i >> 1)}`);
        stalled.push(client);
        assert.match(await client.readLine(), /^\+OK/);
        assert.match(await client.command('STLS'), /^\+OK/);
        client.write(Buffer.from([0x16, 0x03, 0x01]));
      }
      clock.advance(EVICTION_MIN_AGE_MS);
      await ownerLogin(proxy.host, proxy.tlsPort, proxy.caFile);
      assert.equal(await stalled[0]!.closedWithin(2_000), true, 'the oldest stalled STLS handshake made room');
      assert.deepEqual(refusals, []);
      for (const client of stalled.slice(1)) assert.equal(client.closed, false, 'only the oldest makes room');
    } finally {
      for (const client of stalled) client.destroy();
      await proxy.stop();
    }
  });

  it('limits.max_sessions full of stalled handshakes (max_sessions under max_handshakes): the oldest handshake makes room', async () => {
    // A handshake in progress holds a max_sessions place but is no session yet: were only sessions
    // evicted, a bound smaller than max_handshakes would be held by a slowloris on the TLS port.
    const { proxy, refusals, clock } = await startWithClock({ gate: sessionBound(4), limits: { maxHandshakes: 16, maxHandshakesPerIp: 10 } });
    const stalled: Socket[] = [];
    try {
      for (const source of ['127.0.0.81', '127.0.0.82', '127.0.0.83', '127.0.0.84']) stalled.push(await stalledHandshake(proxy.tlsPort, source));
      clock.advance(EVICTION_MIN_AGE_MS);
      await ownerLogin(proxy.host, proxy.tlsPort, proxy.caFile);
      await closed(stalled[0]!);
      for (const socket of stalled.slice(1)) assert.equal(socket.destroyed, false, 'only the oldest makes room');
      assert.deepEqual(refusals, ['tls:test handshake evicted']);
    } finally {
      for (const socket of stalled) socket.destroy();
      await proxy.stop();
    }
  });

  it('limits.max_sessions full of idle pre-login sessions: the oldest not logged in is told -ERR [SYS/TEMP] and closed, a session in TRANSACTION never', async () => {
    const { proxy, refusals, clock } = await startWithClock({ gate: sessionBound(4) });
    const clients: RawClient[] = [];
    try {
      // The oldest session is logged in: it must be passed over.
      const loggedIn = await loggedInSession(proxy.host, proxy.tlsPort, proxy.caFile, '127.0.0.71');
      clients.push(loggedIn);
      const idle: RawClient[] = [];
      for (const source of ['127.0.0.72', '127.0.0.73', '127.0.0.74']) {
        const client = await RawClient.plain(proxy.host, proxy.stlsPort, source);
        clients.push(client);
        idle.push(client);
        assert.match(await client.readLine(), /^\+OK/, source);
      }
      clock.advance(EVICTION_MIN_AGE_MS);
      await ownerLogin(proxy.host, proxy.tlsPort, proxy.caFile);
      assert.equal(await idle[0]!.readLine(), '-ERR [SYS/TEMP] Server busy, try again later');
      assert.equal(await idle[0]!.closedWithin(2_000), true);
      assert.match(await loggedIn.command('STAT'), /^\+OK/, 'the session in TRANSACTION goes on');
      for (const client of idle.slice(1)) assert.match(await client.command('NOOP'), /^-ERR/, 'still open, still in AUTHORIZATION');
      assert.deepEqual(refusals, []);
      const evicted = proxy.logs().filter((l) => l['msg'] === 'session closed' && l['reason'] === 'evicted');
      assert.equal(evicted.length, 1);
    } finally {
      for (const client of clients) client.destroy();
      await proxy.stop();
    }
  });

  it('limits.max_sessions full of sessions whose failed login waits for auth_failure_delay: the oldest makes room', async () => {
    // A refused (or rate-limited) guess is answered at the failure deadline, the session in
    // AUTHENTICATING meanwhile; a client that sends its next PASS at once spends almost all its
    // time there. Were such sessions never evictable, wrong passwords from enough addresses
    // (blocked guesses cost the backend nothing) would hold max_sessions, as a slowloris would.
    const { proxy, refusals, clock } = await startWithClock({ gate: sessionBound(4), authFailureDelayMs: 15_000 });
    const guessing: RawClient[] = [];
    try {
      for (const source of ['127.0.0.72', '127.0.0.73', '127.0.0.74', '127.0.0.75']) {
        const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile, source);
        guessing.push(client);
        assert.match(await client.readLine(), /^\+OK/);
        assert.match(await client.command(`USER ${alice.user}`), /^\+OK/);
        client.write('PASS wrong\r\n');
      }
      // The verdict is in (the audit line) and every reply waits for the failure deadline.
      for (const source of ['127.0.0.72', '127.0.0.73', '127.0.0.74', '127.0.0.75']) {
        await proxy.waitForLog((l) => l['event'] === 'login' && l['result'] === 'failure' && String(l['peer']).startsWith(`${source}:`));
      }
      clock.advance(EVICTION_MIN_AGE_MS);
      await ownerLogin(proxy.host, proxy.tlsPort, proxy.caFile);
      assert.equal(await guessing[0]!.closedWithin(2_000), true, 'the oldest waiting session made room');
      for (const client of guessing.slice(1)) assert.equal(client.closed, false, 'only the oldest makes room');
      assert.deepEqual(refusals, []);
    } finally {
      for (const client of guessing) client.destroy();
      await proxy.stop();
    }
  });

  it('limits.max_sessions full of logged-in sessions: nothing qualifies, the newest is refused', async () => {
    const { proxy, refusals, clock } = await startWithClock({ gate: sessionBound(2) });
    const clients: RawClient[] = [];
    try {
      for (const source of ['127.0.0.71', '127.0.0.72']) clients.push(await loggedInSession(proxy.host, proxy.tlsPort, proxy.caFile, source));
      clock.advance(10 * EVICTION_MIN_AGE_MS);
      const newest = await RawClient.plain(proxy.host, proxy.stlsPort, '127.0.0.73');
      clients.push(newest);
      assert.equal(await newest.readLine(), '-ERR [SYS/TEMP] Server busy, try again later');
      assert.deepEqual(refusals, ['stls:test max_sessions']);
      for (const client of clients.slice(0, 2)) assert.match(await client.command('STAT'), /^\+OK/);
    } finally {
      for (const client of clients) client.destroy();
      await proxy.stop();
    }
  });

  it('limits.max_sessions full of logged-in sessions: each is looked at once, not again at every refused connection', async () => {
    // A full bound of logged-in sessions (they never qualify again) must not make every new
    // connection walk all of them: max_sessions of them times a flood's rate is the CPU it would cost.
    const { proxy, clock } = await startWithClock({ gate: sessionBound(3) });
    const evictable = Object.getOwnPropertyDescriptor(Session.prototype, 'evictable')!;
    const looks = new Map<Session, number>();
    Object.defineProperty(Session.prototype, 'evictable', {
      configurable: true,
      get(this: Session) {
        looks.set(this, (looks.get(this) ?? 0) + 1);
        return evictable.get!.call(this) as boolean;
      },
    });
    const clients: RawClient[] = [];
    try {
      for (const source of ['127.0.0.71', '127.0.0.72', '127.0.0.73']) clients.push(await loggedInSession(proxy.host, proxy.tlsPort, proxy.caFile, source));
      clock.advance(10 * EVICTION_MIN_AGE_MS);
      for (let i = 0; i < 5; i++) {
        const refused = await RawClient.plain(proxy.host, proxy.stlsPort, `127.0.0.${74 + i}`);
        clients.push(refused);
        assert.equal(await refused.readLine(), '-ERR [SYS/TEMP] Server busy, try again later');
      }
      assert.equal(looks.size, 3, 'the three logged-in sessions');
      assert.deepEqual([...looks.values()], [1, 1, 1]);
    } finally {
      Object.defineProperty(Session.prototype, 'evictable', evictable);
      for (const client of clients) client.destroy();
      await proxy.stop();
    }
  });

  // The clock stands still in the two tests below: every connection stays under the eviction
  // floor, as in the first second of a slowloris, so nothing can be evicted to make room.
  it('limits.max_handshakes filled by strangers faster than the age floor: the share kept for returning clients takes the owner, not a stranger', async () => {
    const { proxy, refusals } = await startWithClock({ limits: { maxHandshakes: 16, maxHandshakesPerIp: 2 } });
    const stalled: Socket[] = [];
    const clients: RawClient[] = [];
    try {
      // The owner's earlier login makes its address a returning client.
      await ownerLogin(proxy.host, proxy.tlsPort, proxy.caFile);
      // 8 addresses at 2 each try for all 16 places: 15 are theirs to take (16 less 16/16).
      for (let i = 0; i < 16; i++) stalled.push(await stalledHandshake(proxy.tlsPort, `127.0.0.${81 + (i >> 1)}`));
      const stranger = await RawClient.plain(proxy.host, proxy.tlsPort, '127.0.0.98');
      clients.push(stranger);
      assert.equal(await stranger.closedWithin(2_000), true, 'a stranger is refused');
      await ownerLogin(proxy.host, proxy.tlsPort, proxy.caFile);
      await closed(stalled[15]!);
      for (const socket of stalled.slice(0, 15)) assert.equal(socket.destroyed, false, 'nothing is evicted under the floor');
      assert.deepEqual(refusals, ['tls:test max_handshakes', 'tls:test max_handshakes']);
    } finally {
      for (const socket of stalled) socket.destroy();
      for (const client of clients) client.destroy();
      await proxy.stop();
    }
  });

  it('limits.max_sessions filled by strangers faster than the age floor: the share kept for returning clients takes the owner', async () => {
    const { proxy, refusals } = await startWithClock({ gate: sessionBound(16) });
    const clients: RawClient[] = [];
    try {
      // Logged in and kept open: the owner is a returning client and holds one of the 16 places.
      clients.push(await loggedInSession(proxy.host, proxy.tlsPort, proxy.caFile, '127.0.0.99'));
      // Strangers from several addresses fill the 15 that are theirs (16 less 16/16) ...
      for (let i = 0; i < 14; i++) {
        const client = await RawClient.plain(proxy.host, proxy.stlsPort, `127.0.0.${71 + (i % 4)}`);
        clients.push(client);
        assert.match(await client.readLine(), /^\+OK/);
      }
      // ... and the next one is refused though a place is free.
      const stranger = await RawClient.plain(proxy.host, proxy.stlsPort, '127.0.0.98');
      clients.push(stranger);
      assert.equal(await stranger.readLine(), '-ERR [SYS/TEMP] Server busy, try again later');
      await ownerLogin(proxy.host, proxy.tlsPort, proxy.caFile);
      assert.deepEqual(refusals, ['stls:test max_sessions']);
      assert.equal(proxy.logs().filter((l) => l['reason'] === 'evicted').length, 0, 'nothing is evicted under the floor');
    } finally {
      for (const client of clients) client.destroy();
      await proxy.stop();
    }
  });
});

/**
 * One account that logged in from many addresses makes each of them returning; the kept share
 * still admits only a quarter of itself for that account (RETURNING_ACCOUNT_SHARE_DIVISOR), so
 * the owner gets in. Real logins to Dovecot make the addresses returning.
 */
describe('the share kept for returning clients, against one account from many addresses', { timeout: 60_000 }, () => {
  let dovecot: Dovecot;
  before(async () => {
    dovecot = await startDovecot({ profile: 'all' });
  });
  after(async () => {
    await dovecot?.stop();
  });
  // 64 places: 60 for strangers, 4 kept for returning clients, of which one account holds at most 1.
  const mallory = ['127.0.0.81', '127.0.0.82', '127.0.0.83', '127.0.0.84'];
  const start = (overrides: Pick<ProxyOverrides, 'limits' | 'gate'>, refusals: string[]) =>
    // The clock stands still: nothing is old enough to be evicted, as in the first second of a flood.
    startTestProxy({ backend: { host: dovecot.host, port: dovecot.port }, ...overrides, metrics: refusalRecorder(refusals), now: testClock().now });

  it('limits.max_handshakes: four returning addresses of one account take one kept place, the owner another', async () => {
    const refusals: string[] = [];
    const proxy = await start({ limits: { maxHandshakes: 64, maxHandshakesPerIp: 2 } }, refusals);
    const stalled: Socket[] = [];
    try {
      // bob's password, used from four addresses, makes each of them returning.
      for (const source of mallory) (await loggedInSession(proxy.host, proxy.tlsPort, proxy.caFile, source, bob)).destroy();
      await ownerLogin(proxy.host, proxy.tlsPort, proxy.caFile);
      for (let i = 0; i < 60; i++) stalled.push(await stalledHandshake(proxy.tlsPort, `127.0.0.${100 + (i >> 1)}`));
      const bobs: Socket[] = [];
      for (const source of mallory) bobs.push(await stalledHandshake(proxy.tlsPort, source));
      stalled.push(...bobs);
      await ownerLogin(proxy.host, proxy.tlsPort, proxy.caFile);
      await Promise.all(bobs.slice(1).map(closed));
      assert.equal(bobs[0]!.destroyed, false, "bob's first address holds his one kept place");
      assert.deepEqual(refusals, Array(3).fill('tls:test max_handshakes'));
    } finally {
      for (const socket of stalled) socket.destroy();
      await proxy.stop();
    }
  });

  it('limits.max_sessions: four returning addresses of one account take one kept place, the owner another', async () => {
    const refusals: string[] = [];
    const proxy = await start({ gate: sessionBound(64) }, refusals);
    const clients: RawClient[] = [];
    try {
      // Logged in and kept open: 5 of the strangers' 60 places, and five returning addresses.
      for (const source of mallory) clients.push(await loggedInSession(proxy.host, proxy.tlsPort, proxy.caFile, source, bob));
      clients.push(await loggedInSession(proxy.host, proxy.tlsPort, proxy.caFile, '127.0.0.99'));
      for (let i = 0; i < 55; i++) {
        const client = await RawClient.plain(proxy.host, proxy.stlsPort, `127.0.0.${100 + (i % 8)}`);
        clients.push(client);
        assert.match(await client.readLine(), /^\+OK/);
      }
      const greetings: string[] = [];
      for (const source of mallory) {
        const client = await RawClient.plain(proxy.host, proxy.stlsPort, source);
        clients.push(client);
        greetings.push(await client.readLine());
      }
      assert.deepEqual(greetings.map((g) => g.slice(0, 3)), ['+OK', '-ER', '-ER', '-ER'], greetings.join('\n'));
      await ownerLogin(proxy.host, proxy.tlsPort, proxy.caFile);
      assert.deepEqual(refusals, Array(3).fill('stls:test max_sessions'));
    } finally {
      for (const client of clients) client.destroy();
      await proxy.stop();
    }
  });
});
