/**
 * A failed login is answered at its deadline (auth_failure_delay's grid plus a random spread),
 * whatever the backend's speed, so that an unknown user and a wrong password take the same time
 * . The reply is not the only thing another connection can see: the limiter's places and
 * an `exec:` backend's per-address share are shared by every connection of the address. Were a
 * place given back when the backend refused, a second connection (a canary) sent between the
 * verdict and the reply would learn when the backend refused, which is what the deadline hides:
 * a backend that refuses an unknown user faster than a wrong password would tell them apart. So
 * every such place is held until the failure is answered. The deadlines are held and released by
 * the test (no timing is measured); the backends are a real Dovecot and a real popa3d.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { FailureDeadline } from '../../src/session/failure-deadline.js';
import { createProtection, type Protection } from '../../src/auth/protection.js';
import { createLogger } from '../../src/observability/log.js';
import { NO_METRICS } from '../../src/observability/metrics.js';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';
import { afterCommand, startFaultProxy } from '../harness/fault-proxy.js';
import { startLegacyServer, type LegacyServer } from '../harness/legacy.js';
import { sampleMaildrop } from '../harness/maildrop.js';
import { backendProgramsExited, startTestProxy, testConfig, type TestProxy } from '../harness/popwarden.js';
import { RawClient } from '../harness/raw-client.js';

const { alice, bob } = sampleMaildrop();
const AUTH_FAILED = '-ERR [AUTH] Authentication failed';

/** A FailureDeadline the test opens: every failure waits until the test lets it go, oldest first. */
class HeldDeadline extends FailureDeadline {
  readonly #held: (() => void)[] = [];
  #onHeld: (() => void) | undefined;

  constructor() {
    super(createLogger('silent', new Writable({ write: (_c, _e, done) => done() })));
  }

  override wait(): Promise<void> {
    return new Promise((resolve) => {
      this.#held.push(resolve);
      this.#onHeld?.();
    });
  }

  /** Resolves once `count` failures wait for their deadline. */
  async holding(count: number): Promise<void> {
    while (this.#held.length < count) await new Promise<void>((resolve) => (this.#onHeld = resolve));
  }

  /** Lets the oldest waiting failure be answered. */
  releaseOldest(): void {
    const next = this.#held.shift();
    assert.ok(next !== undefined, 'a failure waits for its deadline');
    next();
  }
}

/** A TLS session from `source` that has sent USER and waits for its PASS. */
async function atPass(proxy: TestProxy, user: string, source = '127.0.0.1'): Promise<RawClient> {
  const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile, source);
  assert.match(await client.readLine(), /^\+OK/);
  assert.match(await client.command(`USER ${user}`), /^\+OK/);
  return client;
}

/** A reply awaited later: a rejection (the client closed) becomes its text, for the assertion to show. */
const answer = (reply: Promise<string>): Promise<string> => reply.catch((error: unknown) => String(error));

/** Lets the held failure be answered; then the canary, refused while it waited, logs in and quits. */
async function answerThenLogIn(deadline: HeldDeadline, probeReply: Promise<string>, canary: RawClient, account: { user: string; pass: string }): Promise<void> {
  deadline.releaseOldest();
  assert.equal(await probeReply, AUTH_FAILED);
  assert.equal(await canary.command(`USER ${account.user}`), '+OK Send PASS');
  assert.equal(await canary.command(`PASS ${account.pass}`, 15_000), '+OK Logged in');
  assert.match(await canary.command('QUIT'), /^\+OK/);
}

/** The audit lines of finished login attempts so far. */
const audits = (proxy: TestProxy): Record<string, unknown>[] => proxy.logs().filter((line) => line['event'] === 'login');

describe('a failed login leaves no trace before its answer', { timeout: 120_000 }, () => {
  let dovecot: Dovecot;
  let popa3d: LegacyServer;

  before(async () => {
    // Dovecot without its own delay or penalty: it refuses at once, so the verdict comes long
    // before the deadline the test holds.
    dovecot = await startDovecot({ profile: 'all', authPenalty: false, authFailureDelay: '0' });
    popa3d = await startLegacyServer({ server: 'popa3d' });
  });
  after(async () => {
    await dovecot?.stop();
    await popa3d?.stop();
  });

  /** popwarden in front of Dovecot (or `via` to it), with the in-process limiter: two failures fill the user+address counter. */
  async function limitedProxy(deadline: HeldDeadline, via: { host: string; port: number } = dovecot): Promise<{ proxy: TestProxy; protection: Protection }> {
    const overrides = { backend: { host: via.host, port: via.port }, authFailureDelayMs: 2_000 };
    const base = testConfig(overrides);
    const config = { ...base, rateLimit: { ...base.rateLimit, userIp: { ...base.rateLimit.userIp, maxFailures: 2 } } };
    const protection = await createProtection(config, createLogger('silent'), NO_METRICS);
    return { proxy: await startTestProxy({ ...overrides, guard: protection.guard, failureDeadline: deadline }), protection };
  }

  /** A wrong password, answered: counted, and its fingerprint kept (a repeat is not counted again). */
  async function countedWrongPassword(proxy: TestProxy, deadline: HeldDeadline, clients: RawClient[]): Promise<void> {
    const first = await atPass(proxy, alice.user);
    clients.push(first);
    const firstReply = answer(first.command('PASS wrong-password', 15_000));
    await deadline.holding(1);
    deadline.releaseOldest();
    assert.equal(await firstReply, AUTH_FAILED);
  }

  test('a repeated wrong password holds its limiter place until it is answered, not only until the backend refused it', async () => {
    const deadline = new HeldDeadline();
    const { proxy, protection } = await limitedProxy(deadline);
    const clients: RawClient[] = [];
    try {
      await countedWrongPassword(proxy, deadline, clients);

      // The probe: the same wrong password. Dovecot refuses it at once; its answer waits for the deadline.
      const probe = await atPass(proxy, alice.user);
      clients.push(probe);
      const probeReply = answer(probe.command('PASS wrong-password', 15_000));
      await deadline.holding(1);
      assert.equal(audits(proxy).at(-1)?.['result'], 'failure', 'Dovecot has refused the probe');

      // The canary, from the same address, between the verdict and the answer: it must find the
      // counter as it was before the verdict (full: the probe holds its place), not as after.
      const canary = await atPass(proxy, alice.user);
      clients.push(canary);
      const canaryReply = answer(canary.command('PASS wrong-password', 15_000));
      await deadline.holding(2);
      assert.deepEqual(
        audits(proxy).map((line) => line['result']),
        ['failure', 'failure', 'blocked'],
        'the canary is blocked by the place the unanswered probe holds; it never reaches the backend',
      );
      deadline.releaseOldest();
      assert.equal(await probeReply, AUTH_FAILED);
      deadline.releaseOldest();
      assert.equal(await canaryReply, '-ERR [SYS/TEMP] Too many failed logins, try again later');

      // Once answered, the repeat's place is given back: the next attempt reaches the backend.
      const after = await atPass(proxy, alice.user);
      clients.push(after);
      const afterReply = answer(after.command('PASS wrong-password', 15_000));
      await deadline.holding(1);
      deadline.releaseOldest();
      assert.equal(await afterReply, AUTH_FAILED);
      assert.equal(audits(proxy).at(-1)?.['result'], 'failure');
    } finally {
      for (const client of clients) client.destroy();
      await proxy.stop();
      await protection.close();
    }
  });

  test('a client that hangs up before the verdict does not free its place at the verdict either', async () => {
    const deadline = new HeldDeadline();
    // Dovecot's verdict on the probe is held back until the probe has hung up.
    const faults = await startFaultProxy(dovecot);
    const { proxy, protection } = await limitedProxy(deadline, faults);
    const clients: RawClient[] = [];
    try {
      await countedWrongPassword(proxy, deadline, clients);
      // The probe sends the repeat; Dovecot refuses it, but the refusal waits in the fault proxy
      // while the probe hangs up; then the verdict arrives with nobody left to answer.
      const verdictHeld = faults.armNext({ kind: 'delay', trigger: afterCommand('AUTH'), delayMs: 3_000 });
      const probe = await atPass(proxy, alice.user);
      clients.push(probe);
      probe.write('PASS wrong-password\r\n');
      await verdictHeld;
      probe.destroy();
      await proxy.waitForLog((line) => line['msg'] === 'session closed' && line['reason'] === 'client-closed');
      await proxy.waitForLog((line) => line['event'] === 'login' && audits(proxy).length === 2, { timeoutMs: 15_000 });
      assert.equal(audits(proxy).at(-1)?.['result'], 'failure', 'Dovecot has refused the probe');
      // The canary still finds the counter full: the probe's place waits for its deadline.
      const canary = await atPass(proxy, alice.user);
      clients.push(canary);
      const canaryReply = answer(canary.command('PASS wrong-password', 15_000));
      await proxy.waitForLog((line) => line['event'] === 'login' && audits(proxy).length === 3, { timeoutMs: 15_000 });
      assert.deepEqual(audits(proxy).map((line) => line['result']), ['failure', 'failure', 'blocked']);
      await deadline.holding(2);
      deadline.releaseOldest();
      deadline.releaseOldest();
      assert.equal(await canaryReply, '-ERR [SYS/TEMP] Too many failed logins, try again later');
    } finally {
      for (const client of clients) client.destroy();
      await proxy.stop();
      await protection.close();
      await faults.stop();
    }
  });

  test('an exec: login holds its place in limits.max_backend_logins_per_ip until it is answered, not only until its program refused it', async () => {
    const deadline = new HeldDeadline();
    const proxy = await startTestProxy({
      backend: { address: { kind: 'exec', ...popa3d.exec, environment: {}, cwd: undefined }, trustLoopback: undefined },
      limits: { maxBackendLoginsPerIp: 1 },
      authFailureDelayMs: 2_000,
      failureDeadline: deadline,
    });
    const clients: RawClient[] = [];
    try {
      // The probe: popa3d refuses the wrong password (after pam_unix's own delay) and exits; the
      // answer waits for the deadline.
      const probe = await atPass(proxy, bob.user, '127.0.0.5');
      clients.push(probe);
      const probeReply = answer(probe.command('PASS wrong-password', 15_000));
      await deadline.holding(1);
      assert.equal(audits(proxy).at(-1)?.['result'], 'failure', 'popa3d has refused the probe');

      // The canary from the same address finds the share taken, as before the verdict.
      const canary = await atPass(proxy, alice.user, '127.0.0.5');
      clients.push(canary);
      assert.equal(await canary.command(`PASS ${alice.pass}`, 15_000), '-ERR [SYS/TEMP] Mail server unavailable, try again later');
      const busy = proxy.logs().find((line) => line['code'] === 'E_BACKEND_BUSY');
      assert.match(String(busy?.['reason']), /limits\.max_backend_logins_per_ip/);

      // Answered: the share is free again, and the same client gets in.
      await answerThenLogIn(deadline, probeReply, canary, alice);
    } finally {
      for (const client of clients) client.destroy();
      await proxy.stop();
    }
    await backendProgramsExited(proxy);
  });

  test('where a backend is exec:, an unknown user holds a place in limits.max_backend_logins_per_ip as a known one does', async () => {
    // Only bob is routed (to popa3d, started per connection); anyone else is an unknown user. Were
    // the place taken only once a route was found, a canary sent while an unknown user's failure
    // waits for its answer would get in, and one sent behind a known user's would find the share
    // full: the share would tell the two apart.
    const deadline = new HeldDeadline();
    const proxy = await startTestProxy({
      backends: [{ name: 'legacy', address: { kind: 'exec', ...popa3d.exec, environment: {}, cwd: undefined }, trustLoopback: undefined }],
      routing: { routes: [{ match: { kind: 'user', user: bob.user }, backend: 'legacy', rewrite: undefined }] },
      limits: { maxBackendLoginsPerIp: 1 },
      authFailureDelayMs: 2_000,
      failureDeadline: deadline,
    });
    const clients: RawClient[] = [];
    try {
      const probe = await atPass(proxy, 'mallory', '127.0.0.6');
      clients.push(probe);
      const probeReply = answer(probe.command('PASS whatever', 15_000));
      await deadline.holding(1);

      const canary = await atPass(proxy, bob.user, '127.0.0.6');
      clients.push(canary);
      assert.equal(await canary.command(`PASS ${bob.pass}`, 15_000), '-ERR [SYS/TEMP] Mail server unavailable, try again later');

      await answerThenLogIn(deadline, probeReply, canary, bob);
    } finally {
      for (const client of clients) client.destroy();
      await proxy.stop();
    }
    await backendProgramsExited(proxy);
  });
});
