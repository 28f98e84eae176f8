/**
 * Fault injection between popwarden and Redis (issue 14.2): a real popwarden process (with
 * --unhandled-rejections=strict) keeps its failed-login counts in a real redis-server reached
 * through the fault proxy. While Redis stalls, resets every connection, or accepts and never
 * answers, logins keep working within the command timeout, the in-process insurance still
 * limits guesses, one line says the store is down, a metric counts the outage, and the store is
 * used again once the fault is gone. Writes its rows of the README table to
 * test-output/faults-redis.md.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';
import { onRedisScript, startFaultProxy, type FaultKind, type FaultProxy } from '../harness/fault-proxy.js';
import { TRUSTED_WITH_COPY } from '../../src/auth/rate-limit/store.js';
import { sampleMaildrop } from '../harness/maildrop.js';
import { sampleValue, spawnPopwarden, stopAll, type PopwardenProcess } from '../harness/popwarden-process.js';
import { RawClient } from '../harness/raw-client.js';
import { startRedis, type RedisServer } from '../harness/redis.js';

const ROOT = resolve(import.meta.dirname, '../..');
const COMMAND_TIMEOUT_MS = 300;
/** A login may take the command timeout and the backend login; more than this is a hang. */
const GUARD_MS = COMMAND_TIMEOUT_MS + 4_000;
const DOWN_LINE = 'rate-limit store (Redis) unavailable: counting failed logins in this process until it is back';
const BACK_LINE = 'rate-limit store (Redis) is back: limits are shared again';
const DOWN_CLOSED_LINE = 'rate-limit store (Redis) unavailable: refusing logins until it is back (on_store_failure: fail_closed)';
const UNAVAILABLE = '-ERR [SYS/TEMP] Login temporarily unavailable, try again later';
const FAILED = '-ERR [AUTH] Authentication failed';
const BLOCKED = '-ERR [SYS/TEMP] Too many failed logins, try again later';
const MAX_FAILURES = 3;

const { alice } = sampleMaildrop();

/** USER/PASS over implicit TLS from `source`; popwarden's reply to PASS. */
async function login(pw: PopwardenProcess, source: string, password: string): Promise<string> {
  const client = await RawClient.tls(pw.host, pw.tlsPort, pw.caFile, source);
  try {
    await client.readLine(GUARD_MS);
    await client.command('USER alice', GUARD_MS);
    return await client.command(`PASS ${password}`, GUARD_MS);
  } finally {
    client.destroy();
  }
}

const REDIS_FAULTS: readonly { kind: FaultKind; what: string }[] = [
  { kind: 'stall', what: 'stall (replies lost, connection open)' },
  { kind: 'reset', what: 'reset every connection' },
  { kind: 'never-answer', what: 'accept, never answer' },
  { kind: 'truncate', what: 'hang up (FIN both ways)' },
];

/**
 * A corrupted byte in the reply to the limiter's first round trip of a login (the trusted mark's
 * lookup, then one script reply per limiter: `*2\r\n:0\r\n$1\r\n0\r\n*2\r\n:1\r\n$9\r\n3600000:1\r\n...`).
 * The proxy waits for the lookup on each connection and corrupts one byte of what follows it (a byte
 * offset from any other point would hit whichever reply came first: a ping, a reconnect's CLIENT
 * SETINFO). The corrupted reply must count as a store failure (the in-process limiter decides
 * that login, one warn line, the outage metric), and Redis is used again on a fresh connection.
 * `reason` is what the warn line says: a reply that parses but cannot be right, or one that never
 * ends. redis-reply-corruption.test.ts corrupts every byte of that round trip in turn.
 */
const CORRUPT_FAULTS: readonly { afterBytes: number; what: string; reason: RegExp }[] = [
  { afterBytes: 5, what: 'corrupt the trusted mark (its `:0` becomes `:*`, read as -6)', reason: /the reply is corrupted/ },
  { afterBytes: 20, what: 'corrupt a byte in the middle of the reply (the user+address count `:1` becomes `:*`, read as -6)', reason: /the reply is corrupted/ },
  { afterBytes: 19, what: 'corrupt a byte in the middle of the reply (the user+address count `:1` becomes `*1`, an array that swallows the replies after it and never ends)', reason: /did not answer|timed out|timeout/i },
];

describe('fault injection between popwarden and Redis', { timeout: 180_000 }, () => {
  let dovecot: Dovecot;
  let redis: RedisServer;
  let proxy: FaultProxy;
  let pw: PopwardenProcess;
  /** The same, with rate_limit.on_store_failure: fail_closed. */
  let closedPw: PopwardenProcess | undefined;
  const rows: string[] = [];

  before(async () => {
    [dovecot, redis] = await Promise.all([startDovecot({ profile: 'all', authPenalty: false, authFailureDelay: '0' }), startRedis()]);
    proxy = await startFaultProxy({ host: redis.host, port: redis.port });
    pw = await spawnPopwarden(settings());
    await pw.waitForLog((e) => String(e['msg']).startsWith('rate limiting in Redis'));
  });

  const settings = (): Record<string, unknown> => ({
    backend: `${dovecot.host}:${dovecot.port}`,
    redis: { url: `redis://${proxy.host}:${proxy.port}`, command_timeout: `${COMMAND_TIMEOUT_MS}ms`, connect_timeout: '1s' },
    rate_limit: { user_ip: { max_failures: MAX_FAILURES, window: '1h', block: '1h' } },
    limits: { max_new_connections_per_ip: 0, max_new_connections_per_ip_per_minute: 0 },
  });

  after(async () => {
    const dir = join(ROOT, 'test-output');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'faults-redis.md'), `${rows.join('\n')}\n`);
    await stopAll([pw, closedPw], proxy, redis, dovecot);
  });

  REDIS_FAULTS.forEach(({ kind, what }, i) => {
    test(`Redis: ${kind} while logins run`, async () => {
      const source = `127.0.0.${i + 2}`;
      const since = pw.logs().length;
      const before = await pw.scrape();
      proxy.armAll({ kind });

      // The right password works, within the command timeout, from the first login of the outage.
      assert.equal(await login(pw, source, alice.pass), '+OK Logged in');
      // Guesses are still limited, in this process.
      for (let n = 1; n <= MAX_FAILURES; n++) assert.equal(await login(pw, source, `wrong-${n}`), FAILED);
      assert.equal(await login(pw, source, alice.pass), BLOCKED);

      // One line says why (the log arrives through a pipe: awaited); a metric counts the outage.
      await pw.waitForLog((e) => e['msg'] === DOWN_LINE, { since });
      const down = pw.logs().slice(since).filter((e) => e['msg'] === DOWN_LINE);
      assert.equal(down.length, 1, JSON.stringify(down));
      const during = await pw.scrape();
      assert.equal(sampleValue(during, 'popwarden_ratelimit_store_up', { store: 'redis' }), 0);
      const outages = (text: string): number => sampleValue(text, 'popwarden_ratelimit_store_outages_total');
      assert.equal(outages(during), outages(before) + 1);
      const errors = sampleValue(during, 'popwarden_ratelimit_store_errors_total') - sampleValue(before, 'popwarden_ratelimit_store_errors_total');

      // The fault ends: the shared store is used again, without a restart.
      proxy.clear();
      await pw.waitForLog((e) => e['msg'] === BACK_LINE, { since, timeoutMs: 10_000 });
      assert.equal(sampleValue(await pw.scrape(), 'popwarden_ratelimit_store_up', { store: 'redis' }), 1);
      assert.equal(pw.crashReport(), undefined, pw.crashReport());
      rows.push(
        `| ${what} | Redis, during logins | the right password +OK, a 4th guess blocked (in process) | ` +
          `warn "rate-limit store (Redis) unavailable: ...", later info "... is back" | ` +
          `\`popwarden_ratelimit_store_outages_total\` +1, \`popwarden_ratelimit_store_errors_total\` +${errors}, \`popwarden_ratelimit_store_up\` 0 then 1 | n/a |`,
      );
    });
  });

  CORRUPT_FAULTS.forEach(({ afterBytes, what, reason }) => {
    test(`Redis: ${what}`, async () => {
      const since = pw.logs().length;
      const before = await pw.scrape();
      proxy.armAll({ kind: 'corrupt', afterBytes, trigger: onRedisScript(TRUSTED_WITH_COPY) });

      // The login is decided (in process), within the command timeout, never hung.
      assert.equal(await login(pw, '127.0.0.7', alice.pass), '+OK Logged in');
      await pw.waitForLog((e) => e['msg'] === DOWN_LINE, { since });
      const down = pw.logs().slice(since).filter((e) => e['msg'] === DOWN_LINE);
      assert.equal(down.length, 1, JSON.stringify(down));
      assert.match(String(down[0]?.['reason']), reason);
      const during = await pw.scrape();
      const outages = (text: string): number => sampleValue(text, 'popwarden_ratelimit_store_outages_total');
      const errors = (text: string): number => sampleValue(text, 'popwarden_ratelimit_store_errors_total');
      assert.equal(outages(during), outages(before) + 1);
      assert.equal(errors(during), errors(before) + 1);

      proxy.clear();
      await pw.waitForLog((e) => e['msg'] === BACK_LINE, { since, timeoutMs: 10_000 });
      assert.equal(sampleValue(await pw.scrape(), 'popwarden_ratelimit_store_up', { store: 'redis' }), 1);
      assert.equal(pw.crashReport(), undefined, pw.crashReport());
      rows.push(
        `| ${what} | Redis, during logins | the right password +OK (decided in process) | ` +
          `warn "rate-limit store (Redis) unavailable: ..." (reason "${String(down[0]?.['reason']).replace(/\d{4,}/g, 'N')}"), later info "... is back" | ` +
          `\`popwarden_ratelimit_store_outages_total\` +1, \`popwarden_ratelimit_store_errors_total\` +1, \`popwarden_ratelimit_store_up\` 0 then 1 | n/a |`,
      );
    });
  });

  test('Redis: stall with on_store_failure: fail_closed refuses logins cleanly, and only until Redis answers', async () => {
    const base = settings();
    closedPw = await spawnPopwarden({ ...base, rate_limit: { ...(base['rate_limit'] as object), on_store_failure: 'fail_closed' } });
    await closedPw.waitForLog((e) => String(e['msg']).startsWith('rate limiting in Redis'));
    const since = closedPw.logs().length;
    const before = await closedPw.scrape();
    proxy.armAll({ kind: 'stall' });
    assert.equal(await login(closedPw, '127.0.0.9', alice.pass), UNAVAILABLE);
    await closedPw.waitForLog((e) => e['msg'] === DOWN_CLOSED_LINE, { since });
    const down = closedPw.logs().slice(since).filter((e) => e['level'] === 'warn');
    assert.deepEqual(down.map((e) => e['msg']), [DOWN_CLOSED_LINE]);
    const during = await closedPw.scrape();
    const refused = (text: string): number => sampleValue(text, 'popwarden_ratelimit_rejections_total', { limiter: 'store_unavailable' });
    assert.equal(refused(during), refused(before) + 1);
    assert.equal(sampleValue(during, 'popwarden_ratelimit_store_outages_total'), sampleValue(before, 'popwarden_ratelimit_store_outages_total') + 1);
    proxy.clear();
    await closedPw.waitForLog((e) => e['msg'] === BACK_LINE, { since, timeoutMs: 10_000 });
    assert.equal(await login(closedPw, '127.0.0.9', alice.pass), '+OK Logged in');
    rows.push(
      '| stall, with `on_store_failure: fail_closed` | Redis, during logins | `' + UNAVAILABLE + '` until Redis answers again | ' +
        'warn "rate-limit store (Redis) unavailable: refusing logins ...", later info "... is back" | ' +
        '`popwarden_ratelimit_rejections_total{limiter="store_unavailable"}` +1, `popwarden_ratelimit_store_outages_total` +1 | n/a |',
    );
  });
});
