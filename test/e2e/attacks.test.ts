/**
 * Attacks while a real user works (issue 14.3), the functional half: each attack kind, small,
 * from many loopback addresses, against popwarden in front of a real Dovecot with a real
 * redis-server limiter, while the legitimate user logs in and fetches a message byte for byte.
 * Asserted: the user succeeds every time, the attacker gets the right -ERR or close, popwarden's
 * per-address bounds apply, and its descriptors come back to their baseline afterwards. No timing
 * is asserted here: bench/attacks.ts measures the user's latency under the same attacks.
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';
import { startProtected, startRedis, type Protected, type RedisServer } from '../harness/redis.js';
import { sampleMaildrop } from '../harness/maildrop.js';
import { DEFAULT_MAX_COMMANDS_BEFORE_LOGIN, DEFAULT_MAX_PROTOCOL_ERRORS_PER_IP_PER_HOUR } from '../../src/config/limits.js';
import { RawClient } from '../harness/raw-client.js';
import {
  GARBAGE_KINDS, legitimateFetch, loopbackSources, runAttack,
  type AttackKind, type AttackOptions, type AttackReport, type AttackTarget, type LegitResult,
} from '../harness/attackers.js';

const { alice } = sampleMaildrop();
const OWNER = { user: alice.user, pass: alice.pass };
/** The owner's usual address: trusted by a login before every attack. */
const OWNER_SOURCE = '127.0.0.2';
// 30 new connections a second per address, not the default 10, and no bound per minute: the
// owner here logs in faster than a person, test after test; the floods below still go well past it.
const LIMITS = { maxSessionsPerIp: 20, maxNewConnectionsPerIp: 30, maxNewConnectionsPerIpPerMinute: 0, maxHandshakesPerIp: 10, maxInvalidCommands: 5 };
const RATE_LIMIT = {
  ip: { maxFailures: 8, windowMs: 3_600_000, blockMs: 3_600_000 },
  user: { maxFailures: 10, windowMs: 3_600_000, blockMs: 900_000 },
};

const openDescriptors = (): number => readdirSync('/proc/self/fd').length;

/**
 * Resolves once this process (popwarden runs in it) holds no more descriptors than `baseline`:
 * every socket of an attack is closed on both ends. Checks on each turn of a short poll, and
 * rejects with the count it last saw after `ms`.
 */
async function descriptorsBackTo(baseline: number, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const now = openDescriptors();
    if (now <= baseline) return;
    if (Date.now() > deadline) throw new Error(`${now} descriptors open, baseline ${baseline}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('attacks while a real user works (issue 14.3)', { timeout: 120_000 }, () => {
  let dovecot: Dovecot;
  let redis: RedisServer;
  let guarded: Protected;
  let target: AttackTarget;
  let baseline: number;

  const fetchAsOwner = (source = OWNER_SOURCE): Promise<LegitResult> => legitimateFetch(target, OWNER, alice.messages[0]!.bytes, source);

  /**
   * Runs `kind` and, meanwhile, `sessions` complete sessions of the owner one after another;
   * asserts every one of them succeeded, and that popwarden let go of every descriptor after.
   */
  async function underAttack(kind: AttackKind, options: Omit<AttackOptions, 'target'>, sessions = 3): Promise<AttackReport> {
    const attack = runAttack(kind, { ...options, target });
    const owner: LegitResult[] = [];
    for (let i = 0; i < sessions; i++) owner.push(await fetchAsOwner());
    const report = await attack;
    assert.deepEqual(owner.map((r) => r.failure), owner.map(() => undefined), 'the owner fetched its mail every time');
    await descriptorsBackTo(baseline);
    assert.equal(guarded.proxy.proxy.listeners.length, 2, 'popwarden still listening');
    return report;
  }

  before(async () => {
    dovecot = await startDovecot({ profile: 'all', authPenalty: false, authFailureDelay: '0' });
    redis = await startRedis();
    guarded = await startProtected(dovecot, {
      redis: { kind: 'url', url: redis.url },
      // The counts below are Redis's: on a loaded machine a reply slower than the harness's usual
      // 300 ms would hand the decision to the in-process insurance limiter, which starts from zero.
      commandTimeoutMs: 3_000,
      limits: LIMITS,
      rateLimit: RATE_LIMIT,
      timeouts: { preAuthMs: 2_000, tlsHandshakeMs: 2_000 },
    });
    target = { host: guarded.proxy.host, tlsPort: guarded.proxy.tlsPort, stlsPort: guarded.proxy.stlsPort, caFile: guarded.proxy.caFile };
  });
  after(async () => {
    await guarded?.stop();
    await redis?.stop();
    await dovecot?.stop();
  });
  beforeEach(async () => {
    // Each attack meets a fresh limiter, and the owner's address trusted by a login.
    await redis.cli('flushall');
    const first = await fetchAsOwner();
    assert.equal(first.failure, undefined);
    baseline ??= openDescriptors();
  });

  test('slowloris on 110: every trickling connection is closed at the login deadline', async () => {
    const report = await underAttack('slowloris-110', { sources: loopbackSources(2, 10), concurrency: 30, durationMs: 15_000 });
    assert.deepEqual(Object.keys(report.outcomes), ['closed by popwarden (-ERR Login timed out)']);
  });

  test('slowloris on 995: stalled handshakes are closed, the per-address handshake bound refuses the excess at once', async () => {
    const refusedBefore = guarded.proxy.logs().filter((l) => l['reason'] === 'too_many_handshakes').length;
    // 12 stalled handshakes from each of 3 addresses: 10 each are let in (and time out), 2 each refused.
    const report = await underAttack('slowloris-995', { sources: loopbackSources(3, 3), concurrency: 36, durationMs: 15_000 });
    assert.deepEqual(report.outcomes, { 'closed by popwarden': 36 });
    const refused = guarded.proxy.logs().filter((l) => l['reason'] === 'too_many_handshakes').length - refusedBefore;
    assert.equal(refused, 6);
  });

  test('connection flood: the per-address rate refuses the excess with -ERR [SYS/TEMP]', async () => {
    const report = await underAttack('connection-flood', { sources: loopbackSources(4, 3), concurrency: 30, durationMs: 10_000, maxAttempts: 150 });
    const { greeted = 0, ...rest } = report.outcomes;
    assert.ok(greeted > 0);
    assert.deepEqual(Object.keys(rest), ['-ERR [SYS/TEMP] Too many connections from your address, try again later']);
  });

  test('TLS handshake flood: full handshakes from many addresses complete or are refused, nothing else', async () => {
    const report = await underAttack('tls-handshake-flood', { sources: loopbackSources(5, 8), concurrency: 8, durationMs: 10_000, maxAttempts: 60 });
    assert.ok((report.outcomes['handshake completed'] ?? 0) > 0);
    for (const label of Object.keys(report.outcomes)) assert.match(label, /^(handshake completed|closed before the handshake)$/);
  });

  test('pipelined flood: thousands of CAPA in one write meet limits.max_commands_before_login', async () => {
    const report = await underAttack('pipelined-flood', { sources: loopbackSources(6, 3), concurrency: 3, durationMs: 10_000, maxAttempts: 3, pipelineDepth: 2_000 });
    assert.deepEqual(report.outcomes, {
      [`closed after ${DEFAULT_MAX_COMMANDS_BEFORE_LOGIN} replies, then -ERR Too many commands without logging in, closing connection`]: 3,
    });
  });

  test('pipelined flood of invalid commands: closed at limits.max_invalid_commands, the rest unread', async () => {
    const client = await RawClient.plain(target.host, target.stlsPort, '127.6.0.9');
    await client.readLine();
    client.write('NOOP\r\n'.repeat(2_000));
    assert.equal(await client.closedWithin(5_000), true);
    const replies = client.all().toString('latin1').split('\r\n').filter((l) => l.startsWith('-ERR'));
    assert.equal(replies.length, LIMITS.maxInvalidCommands + 1, replies.join(' / '));
    assert.equal(replies.at(-1), '-ERR Too many invalid commands, closing connection');
    client.destroy();
    await descriptorsBackTo(baseline);
  });

  test('oversized SASL: refused with -ERR and closed, inline or as a continuation', async () => {
    const report = await underAttack('oversized-sasl', { sources: loopbackSources(7, 4), concurrency: 4, durationMs: 10_000, maxAttempts: 8 });
    assert.deepEqual(report.outcomes, { 'inline 300 chars: -ERR Line too long, closed': 4, 'continuation 64 KiB: -ERR Line too long, closed': 4 });
  });

  test('oversized SASL kept up from one address: past limits.max_protocol_errors_per_ip_per_hour it is refused at accept, before its TLS handshake; a returning client never is', async () => {
    const budget = DEFAULT_MAX_PROTOCOL_ERRORS_PER_IP_PER_HOUR;
    const attacker = '127.7.1.1';
    // One at a time, so each session has ended (and counted) before the next connects.
    const report = await underAttack('oversized-sasl', { sources: [attacker], concurrency: 1, durationMs: 30_000, maxAttempts: budget + 2 });
    assert.deepEqual(report.outcomes, {
      'inline 300 chars: -ERR Line too long, closed': budget / 2,
      'continuation 64 KiB: -ERR Line too long, closed': budget / 2,
      // The TLS port closes without a byte: the client's handshake never begins.
      closed: 2,
    });
    await guarded.proxy.waitForLog((l) => l['msg'] === 'connection refused' && l['reason'] === 'too_many_protocol_errors' && l['peer'] === attacker);
    // The STLS port says why, in clear.
    const plain = await RawClient.plain(target.host, target.stlsPort, attacker);
    assert.equal(await plain.readLine(), '-ERR [SYS/TEMP] Too many protocol errors from your address, try again later');
    plain.destroy();
    // The owner's address (a login succeeded from it) sending the same is answered every time, and the owner still works.
    const fromOwner = await underAttack('oversized-sasl', { sources: [OWNER_SOURCE], concurrency: 1, durationMs: 30_000, maxAttempts: budget + 2 });
    assert.deepEqual(fromOwner.outcomes, {
      'inline 300 chars: -ERR Line too long, closed': budget / 2 + 1,
      'continuation 64 KiB: -ERR Line too long, closed': budget / 2 + 1,
    });
  });

  test('other protocols: HTTP, SMTP, binary and TLS on 110, HTTP on 995: closed, with one log line each', async () => {
    // One connection per kind, each from an address of its own, so its log lines can be found.
    const sources = loopbackSources(8, GARBAGE_KINDS.length);
    const report = await underAttack('garbage-protocols', { sources, concurrency: 1, durationMs: 10_000, maxAttempts: GARBAGE_KINDS.length });
    assert.deepEqual(report.outcomes, {
      'HTTP on 110: 1 × -ERR Unknown command, closed': 1,
      'SMTP on 110: 6 × -ERR Too many invalid commands, closing connection, closed': 1,
      'binary on 110: 6 × -ERR Too many invalid commands, closing connection, closed': 1,
      'TLS on 110: closed': 1,
      'HTTP on 995: closed': 1,
    });
    // info and above: what an operator sees at the default log level.
    const operatorSees = (l: Record<string, unknown>): boolean => ['info', 'warn', 'error', 'fatal'].includes(String(l['level']));
    // Session lines carry ADDRESS:PORT, the listener's own lines the address alone.
    const from = (l: Record<string, unknown>, source: string): boolean => l['peer'] === source || String(l['peer']).startsWith(`${source}:`);
    const seen = sources.map((source) => guarded.proxy.logs().filter((l) => operatorSees(l) && from(l, source)));
    const summary = seen.map((lines, i) => `${GARBAGE_KINDS[i]}: ${lines.map((l) => `${String(l['msg'])} ${String(l['reason'] ?? '')}`).join(' + ')}`);
    assert.deepEqual(seen.map((lines) => lines.length), GARBAGE_KINDS.map(() => 1), summary.join('\n'));
  });

  test('credential stuffing across many users: refused, and the per-address failure bound blocks each address', async () => {
    // 2 addresses, 10 users each: the ip limit (8 failures) lets 8 guesses per address reach Dovecot.
    const report = await underAttack('credential-stuffing', { sources: loopbackSources(9, 2), concurrency: 2, durationMs: 20_000, maxAttempts: 20 });
    assert.deepEqual(report.outcomes, {
      '-ERR [AUTH] Authentication failed': 16,
      '-ERR [SYS/TEMP] Too many failed logins, try again later': 4,
    });
  });

  test('one user attacked from many addresses: the owner keeps working from its trusted address, not from a new one', async () => {
    // 30 wrong passwords for alice from 15 addresses: 10 reach Dovecot (rate_limit.user), then blocked.
    const report = await underAttack(
      'one-user-many-addresses',
      { sources: loopbackSources(10, 15), concurrency: 5, durationMs: 20_000, maxAttempts: 30, victim: OWNER.user },
      5,
    );
    assert.deepEqual(report.outcomes, {
      '-ERR [AUTH] Authentication failed': 10,
      '-ERR [SYS/TEMP] Too many failed logins, try again later': 20,
    });
    // The trusted-pair exemption covers only addresses the owner used before: a new phone, or a
    // laptop on a trip, is locked out with everyone else until rate_limit.user.block ends.
    const fromElsewhere = await fetchAsOwner('127.0.0.3');
    assert.equal(fromElsewhere.failure, 'login: -ERR [SYS/TEMP] Too many failed logins, try again later');
  });
});
