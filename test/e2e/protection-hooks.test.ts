/**
 * How the session uses the failed-login guard, the connection gate and the metrics events,
 * with recording stand-ins (the Redis-backed guard has its own tests against a real Redis).
 * A-01 (a blocked guess never reaches the backend), A-04 (what counts as a failure), A-05.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startFakeBackend, legacyScript, type FakeBackend } from '../harness/fake-backend.js';
import { startTestProxy, type TestProxy } from '../harness/popwarden.js';
import { RawClient } from '../harness/raw-client.js';
import type { GuardDecision, LoginAttempt, LoginGuard, LoginVerdict } from '../../src/auth/login-guard.js';
import type { ConnectionGate } from '../../src/net/connection-gate.js';
import { NO_METRICS, type Metrics } from '../../src/observability/metrics.js';

type Limited = Extract<GuardDecision, { kind: 'limited' }>;

class RecordingGuard implements LoginGuard {
  /** Reservations are refused with this while it is set. */
  limited: Limited | undefined;
  readonly calls: string[] = [];
  readonly passwordsSeen: string[] = [];
  #settlementSeen: ((call: string) => void) | undefined;
  /** Resolves with the next settlement ("VERDICT USER"). */
  nextSettlement(): Promise<string> {
    return new Promise((resolve) => (this.#settlementSeen = resolve));
  }
  reserve(attempt: LoginAttempt): Promise<GuardDecision> {
    this.calls.push(`reserve ${attempt.ip} ${attempt.user}`);
    this.passwordsSeen.push(attempt.password.toString('latin1'));
    if (this.limited !== undefined) return Promise.resolve(this.limited);
    return Promise.resolve({
      kind: 'allowed',
      settle: (verdict: LoginVerdict) => {
        this.calls.push(`${verdict} ${attempt.user}`);
        // After the session's own continuation (its audit line) has run: microtasks come first.
        const seen = this.#settlementSeen;
        setImmediate(() => seen?.(`${verdict} ${attempt.user}`));
        return Promise.resolve();
      },
    });
  }
  settled(): Promise<void> {
    return Promise.resolve();
  }
  settleReservations(): Promise<void> {
    this.calls.push('settleReservations');
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Records every metrics event as "name arg arg ..." (durations left out). */
function recordingMetrics(events: string[]): Metrics {
  const record =
    (name: string, keep: number) =>
    (...args: unknown[]): void => {
      events.push([name, ...args.slice(0, keep)].join(' '));
    };
  return {
    ...NO_METRICS,
    connectionOpened: record('connectionOpened', 2),
    connectionRefused: record('connectionRefused', 2),
    sessionClosed: record('sessionClosed', 2),
    tlsHandshake: record('tlsHandshake', 3),
    stlsUpgrade: record('stlsUpgrade', 3),
    loginAttempt: record('loginAttempt', 3),
    rateLimitRejection: record('rateLimitRejection', 1),
    backendError: record('backendError', 1),
    commandRelayed: record('commandRelayed', 1),
    bytesRelayed: record('bytesRelayed', 2),
  };
}

describe('failed-login guard in the session', () => {
  let backend: FakeBackend;
  let proxy: TestProxy;
  const guard = new RecordingGuard();
  const events: string[] = [];

  before(async () => {
    backend = await startFakeBackend(
      legacyScript({
        onCommand: async ({ conn, verb, args, state, line }) => {
          if (state === 'AUTHORIZATION' && verb === 'PASS' && line.includes('wrong') && conn.lines().includes('USER slowfail')) {
            // A backend that takes its time over a wrong password, as Dovecot does: the delay is
            // the scenario, not a wait for something.
            await new Promise((resolve) => setTimeout(resolve, 300));
            void conn.write('-ERR [AUTH] Authentication failed.\r\n');
            return true;
          }
          if (state === 'AUTHORIZATION' && verb === 'USER' && args[0] === 'busy') {
            void conn.write('-ERR [IN-USE] locked\r\n');
            return true;
          }
          return;
        },
      }),
    );
    proxy = await startTestProxy({
      backend: { host: backend.host, port: backend.port },
      guard,
      metrics: recordingMetrics(events),
      authFailureDelayMs: 200,
    });
  });
  after(async () => {
    await proxy.stop();
    await backend.stop();
  });

  const login = async (user: string, password: string): Promise<string> => {
    const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
    await client.readLine();
    await client.command(`USER ${user}`);
    const reply = await client.command(`PASS ${password}`);
    client.destroy();
    return reply;
  };

  test('a success is reserved first and settled as accepted after', async () => {
    guard.calls.length = 0;
    assert.equal(await login('alice', 's3cret!pw'), '+OK Logged in');
    assert.deepEqual(guard.calls, ['reserve 127.0.0.1 alice', 'accepted alice']);
  });

  test('a wrong password is settled as refused; the guard saw the password only when reserving', async () => {
    guard.calls.length = 0;
    assert.equal(await login('alice', 'wrong'), '-ERR [AUTH] Authentication failed');
    assert.deepEqual(guard.calls, ['reserve 127.0.0.1 alice', 'refused alice']);
    assert.deepEqual(guard.passwordsSeen.slice(-1), ['wrong']);
  });

  test('[IN-USE] is not a failed password: the reservation is given back (A-04)', async () => {
    guard.calls.length = 0;
    assert.match(await login('busy', 'whatever'), /^-ERR \[IN-USE\]/);
    assert.deepEqual(guard.calls, ['reserve 127.0.0.1 busy', 'not_judged busy']);
  });

  test('a client that hangs up right after PASS is still counted and audited', { timeout: 10_000 }, async () => {
    guard.calls.length = 0;
    const settlement = guard.nextSettlement();
    const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
    await client.readLine();
    await client.command('USER slowfail');
    client.write('PASS wrong\r\n');
    client.destroy();
    assert.equal(await settlement, 'refused slowfail');
    assert.deepEqual(guard.calls, ['reserve 127.0.0.1 slowfail', 'refused slowfail']);
    assert.match(proxy.logText(), /"user":"slowfail".*"result":"failure"/);
  });

  test('a blocked login never reaches the backend, even with the right password, and waits the failure delay (A-01)', async () => {
    guard.limited = { kind: 'limited', retryMs: 60_000, limiter: 'user_ip' };
    try {
      const connectionsBefore = backend.connections().length;
      const started = Date.now();
      assert.equal(await login('alice', 's3cret!pw'), '-ERR [SYS/TEMP] Too many failed logins, try again later');
      assert.ok(Date.now() - started >= 190);
      assert.equal(backend.connections().length, connectionsBefore);
      assert.ok(events.includes('rateLimitRejection user_ip'));
      assert.ok(events.includes('loginAttempt user  blocked'));
      assert.match(proxy.logText(), /"limiter":"user_ip".*"result":"blocked"/);
    } finally {
      guard.limited = undefined;
    }
  });

  test('a guard whose store is down and that fails closed gets its own [SYS/TEMP] reply', async () => {
    guard.limited = { kind: 'limited', retryMs: 0, limiter: 'store_unavailable' };
    try {
      assert.equal(await login('alice', 's3cret!pw'), '-ERR [SYS/TEMP] Login temporarily unavailable, try again later');
    } finally {
      guard.limited = undefined;
    }
  });

  test('metrics see connections, handshakes, logins, relayed commands and closes', async () => {
    events.length = 0;
    const logsBefore = proxy.logs().length;
    const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
    await client.readLine();
    await client.command('USER alice');
    await client.command('PASS s3cret!pw');
    await client.multi('RETR 1');
    await client.command('QUIT');
    await client.closedWithin(2_000);
    // The session logs this line and counts the close in one synchronous step.
    await proxy.waitForLog((e) => e['msg'] === 'session closed' && e['reason'] === 'quit', { since: logsBefore });
    assert.ok(events.includes('connectionOpened tls:test implicit'), events.join('\n'));
    assert.ok(events.some((e) => e.startsWith('tlsHandshake tls:test success TLSv1.3')), events.join('\n'));
    assert.ok(events.includes('loginAttempt user user success'), events.join('\n'));
    assert.ok(events.includes('commandRelayed RETR'));
    assert.ok(events.includes('commandRelayed QUIT'));
    assert.ok(events.some((e) => /^bytesRelayed to_client [1-9]/.test(e)));
    assert.ok(events.includes('sessionClosed tls:test quit'), events.join('\n'));
  });

  test('STLS is counted, with the lines it discarded', async () => {
    events.length = 0;
    const client = await RawClient.plain(proxy.host, proxy.stlsPort);
    await client.readLine();
    client.write('STLS\r\nCAPA\r\nNOOP\r\n');
    assert.equal(await client.readLine(), '+OK Begin TLS negotiation');
    await client.upgrade(proxy.caFile);
    await client.command('QUIT');
    await client.closedWithin(2_000);
    assert.ok(events.includes('stlsUpgrade stls:test success 2'), events.join('\n'));
    assert.ok(events.includes('connectionOpened stls:test starttls'));
  });
});

describe('connection gate', () => {
  test('a refused connection gets one -ERR line and no session', async () => {
    const backend = await startFakeBackend(legacyScript());
    let released = 0;
    const gate: ConnectionGate = {
      admit: (ip) =>
        ip === '127.0.0.1' ? { kind: 'refused', reason: 'denied' } : { kind: 'admitted', release: () => void released++ },
      protocolError: () => undefined,
    };
    const events: string[] = [];
    const proxy = await startTestProxy({ backend: { host: backend.host, port: backend.port }, gate, metrics: recordingMetrics(events) });
    try {
      const plain = await RawClient.plain(proxy.host, proxy.stlsPort);
      assert.equal(await plain.readLine(), '-ERR [SYS/PERM] Connections from your address are not accepted');
      assert.equal(await plain.closedWithin(2_000), true);
      assert.ok(events.includes('connectionRefused stls:test denied'));
      assert.ok(!events.some((e) => e.startsWith('connectionOpened')));
      assert.ok(!proxy.logText().includes('session opened'));
    } finally {
      await proxy.stop();
      await backend.stop();
    }
  });
});

describe('shutdown', () => {
  test("the proxy's close begins the guard's wait for unsettled reservations itself, beside reaping programs, so the bounds do not add up", async () => {
    const backend = await startFakeBackend(legacyScript());
    const guard = new RecordingGuard();
    const proxy = await startTestProxy({ backend: { host: backend.host, port: backend.port }, guard });
    try {
      await proxy.stop();
      assert.deepEqual(guard.calls, ['settleReservations']);
    } finally {
      await backend.stop();
    }
  });
});
