/**
 * Several instances behind one address (issue 13.9), the deployment of contrib/haproxy on
 * loopback: a real HAProxy (TCP mode, PROXY v2, round-robin with health checks) in front of two
 * popwarden processes (spawnPopwarden: `node src/cli.ts --config`) that share one real
 * redis-server, each in front of its own real Dovecot (which takes the client's address from
 * popwarden's PROXY v2 header). Clients bind loopback aliases, so their address differs from
 * HAProxy's (127.0.0.1) in every log; each instance greets with its name, so a client knows
 * which one answered it.
 *
 * Both instances have both Dovecots as named backends and the same static route (bob to the
 * second, everyone else to the first), as contrib/popwarden/instance-a.yaml has.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';
import { startHaproxy, type Haproxy } from '../harness/haproxy.js';
import { startRedis, type RedisServer } from '../harness/redis.js';
import { spawnPopwarden, stopAll, type PopwardenProcess } from '../harness/popwarden-process.js';
import { scratchDir } from '../harness/scratch.js';
import { testCertificate } from '../harness/popwarden.js';
import { RawClient } from '../harness/raw-client.js';
import { fetchWithCurl } from '../harness/clients.js';
import { sampleMaildrop } from '../harness/maildrop.js';
import { Reply } from '../../src/pop3/replies.js';

const { alice, bob } = sampleMaildrop();
/** The backends' names: alice lives on the first Dovecot, bob on the second. */
const BACKEND_NAMES = ['one', 'two'] as const;

/** One popwarden process, named in its greeting so a client knows which one answered. */
interface Instance {
  readonly name: string;
  readonly process: PopwardenProcess;
}

/**
 * An instance as contrib/popwarden/instance-a.yaml has it, on loopback: both listeners take a
 * PROXY header from HAProxy (127.0.0.1), the backend is told the client by PROXY v2, and the
 * Redis, key prefix and HMAC key are the other instance's.
 */
async function startInstance(name: string, dovecots: readonly Dovecot[], redis: RedisServer, hmacKeyFile: string): Promise<Instance> {
  const behindHaproxy = { address: '127.0.0.1:0', proxy_protocol: true, proxy_protocol_trusted: ['127.0.0.1/32'] };
  const process = await spawnPopwarden({
    listen_tls: [behindHaproxy],
    listen_stls: [behindHaproxy],
    greeting: `popwarden ${name} ready`,
    backends: Object.fromEntries(dovecots.map((dovecot, i) => [BACKEND_NAMES[i], { address: `127.0.0.1:${dovecot.port}`, proxy_protocol: 'v2' }])),
    routing: { routes: [{ user: bob.user, backend: 'two' }], default: 'one' },
    limits: { max_new_connections_per_ip: 0, max_new_connections_per_ip_per_minute: 0 },
    redis: { url: redis.url },
    rate_limit: { key_prefix: 'popwarden-pair', hmac_key_file: hmacKeyFile },
  });
  return { name, process };
}

const isAuditOf = (address: string) => (entry: Record<string, unknown>): boolean =>
  entry['event'] === 'login' && String(entry['peer']).startsWith(`${address}:`);

/**
 * The audit lines for the client `address` that `instance` writes after log line `since`, once
 * there are `count`: a client can read popwarden's reply before the line is in the log.
 */
async function audits(instance: Instance, since: number, address: string, count: number): Promise<Record<string, unknown>[]> {
  const matches = isAuditOf(address);
  let seen = 0;
  if (count > 0) await instance.process.waitForLog((entry) => matches(entry) && ++seen === count, { since, timeoutMs: 10_000 });
  return instance.process.logs().slice(since).filter(matches);
}

/** Digest of every message file of `user` in `dovecot`'s Maildir (new and cur, whatever the flags). */
function maildirDigest(dovecot: Dovecot, user: string): string[] {
  const home = join(dovecot.dir, 'mail', user);
  return ['new', 'cur']
    .flatMap((sub) => readdirSync(join(home, sub)).map((file) => readFileSync(join(home, sub, file))))
    .map((bytes) => createHash('sha256').update(bytes).digest('hex'))
    .sort();
}

/** A client through HAProxy's implicit-TLS frontend from `source`, and which instance greeted it. */
interface Connected {
  readonly client: RawClient;
  readonly instance: Instance;
}

async function connectThrough(haproxy: Haproxy, instances: readonly Instance[], source: string): Promise<Connected> {
  const client = await RawClient.tls(haproxy.host, haproxy.ports[0] ?? 0, testCertificate().caFile, source);
  try {
    const greeting = await client.readLine(10_000);
    const instance = instances.find((candidate) => greeting.startsWith(`+OK popwarden ${candidate.name} ready`));
    assert.ok(instance !== undefined, `a greeting from one of the instances: ${greeting}`);
    return { client, instance };
  } catch (error) {
    client.destroy();
    throw error;
  }
}

/** USER/PASS on a connected client; the reply to PASS. */
async function logIn(client: RawClient, user: string, pass: string): Promise<string> {
  assert.match(await client.command(`USER ${user}`), /^\+OK/);
  return client.command(`PASS ${pass}`, 15_000);
}

/** One login through HAProxy from `source`; which instance answered, and its reply to PASS. */
async function attempt(haproxy: Haproxy, instances: readonly Instance[], source: string, user: string, pass: string): Promise<{ instance: Instance; reply: string }> {
  const { client, instance } = await connectThrough(haproxy, instances, source);
  try {
    return { instance, reply: await logIn(client, user, pass) };
  } finally {
    client.destroy();
  }
}

describe('two instances behind HAProxy, sharing one Redis, each before its own Dovecot (issue 13.9)', { timeout: 60_000 }, () => {
  let redis: RedisServer | undefined;
  const dovecots: Dovecot[] = [];
  const instances: Instance[] = [];
  let haproxy: Haproxy | undefined;

  before(async () => {
    redis = await startRedis();
    const backend = { profile: 'all', authPenalty: false, authFailureDelay: '0', haproxy: true } as const;
    // Different users: alice's mail is on the first, bob's on the second; routing sends each to theirs.
    dovecots.push(await startDovecot({ ...backend, accounts: ['alice'] }), await startDovecot({ ...backend, accounts: ['bob'] }));
    const hmacKeyFile = join(scratchDir('popwarden-pair-key'), 'hmac.key');
    writeFileSync(hmacKeyFile, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    instances.push(
      ...(await Promise.all([startInstance('a', dovecots, redis, hmacKeyFile), startInstance('b', dovecots, redis, hmacKeyFile)])),
    );
    haproxy = await startHaproxy([{ to: instances.map(({ process }) => ({ host: '127.0.0.1', port: process.tlsPort })), header: 'v2' }]);
  });

  after(async () => {
    // Fails the suite if an instance crashed (the one the last test kills was asked to die).
    await stopAll(
      instances.map(({ process }) => process),
      haproxy,
      ...dovecots,
      redis,
    );
  });

  const marks = (): number[] => instances.map(({ process }) => process.logs().length);
  const lb = (): Haproxy => haproxy as Haproxy;
  const through = (source: string, user: string, pass: string) => attempt(lb(), instances, source, user, pass);
  /** How many of `answered` each instance served. */
  const servedBy = (answered: readonly { instance: Instance }[], instance: Instance): number => answered.filter((a) => a.instance === instance).length;

  test('a real client (curl) reaches both instances; popwarden audits and Dovecot logs the client, not HAProxy', async () => {
    const dovecotFrom = dovecots.map((dovecot) => readFileSync(dovecot.logFile, 'latin1').length);
    // Round-robin alternates, unless a health check has just marked an instance down: at most six fetches.
    const served = new Set<Instance>();
    for (let i = 0; i < 6 && served.size < instances.length; i++) {
      const from = marks();
      const result = await fetchWithCurl({ host: lb().host, port: lb().ports[0] ?? 0, mode: 'implicit', user: alice.user, pass: alice.pass, caFile: testCertificate().caFile, interface: '127.0.0.7', messages: [1], verbose: true });
      assert.ok(result.ok, result.stderr);
      const index = instances.findIndex((instance) => result.stderr.includes(`< +OK popwarden ${instance.name} ready`));
      const instance = instances[index];
      assert.ok(instance !== undefined, `curl was greeted by an instance: ${result.stderr}`);
      served.add(instance);
      const [line] = await audits(instance, from[index] ?? 0, '127.0.0.7', 1);
      assert.equal(line?.['result'], 'success', `instance ${instance.name} audited curl's login as the client's`);
      assert.equal(instance.process.logs().slice(from[index]).filter(isAuditOf('127.0.0.1')).length, 0, "HAProxy's address is in no audit line");
    }
    assert.equal(served.size, instances.length, 'both instances served curl');
    // Both instances logged alice in to her Dovecot, which saw the client each time.
    const logins = await dovecots[0]!.whenLogged(() => {
      const found = [...readFileSync(dovecots[0]!.logFile, 'latin1').slice(dovecotFrom[0]).matchAll(/pop3-login: Info: Login: user=<alice>, [^\n]*?rip=([^,\s]+)/g)].map((m) => m[1]);
      return found.length >= 2 ? found : undefined;
    }, 10_000);
    assert.deepEqual(logins, ['127.0.0.7', '127.0.0.7']);
  });

  test('each user reaches their own backend whichever instance answers', async () => {
    const from = marks();
    const answered = [];
    // Logins alternate over both instances; alice's mail is only on the first Dovecot, bob's only on the second.
    for (let i = 0; i < 2; i++) {
      for (const user of [alice, bob]) {
        const result = await through('127.0.0.8', user.user, user.pass);
        assert.equal(result.reply, Reply.loggedIn, `${user.user} through instance ${result.instance.name}`);
        answered.push(result);
      }
    }
    for (const [i, instance] of instances.entries()) {
      const lines = await audits(instance, from[i] ?? 0, '127.0.0.8', servedBy(answered, instance));
      for (const line of lines) assert.equal(line['backend'], line['user'] === alice.user ? 'one' : 'two', JSON.stringify(line));
    }
  });

  test('failed logins from one address are counted once across both instances: the 11th is blocked whichever instance answers', async () => {
    const from = marks();
    const guesses = [];
    for (let i = 1; i <= 10; i++) guesses.push(await through('127.0.0.9', alice.user, `wrong-guess-${i}`));
    for (const { reply } of guesses) assert.match(reply, /^-ERR \[AUTH\]/);
    for (const [i, instance] of instances.entries()) {
      const counted = servedBy(guesses, instance);
      assert.ok(counted > 0 && counted < 10, `both instances judged some guesses (${instance.name}: ${counted})`);
      const lines = await audits(instance, from[i] ?? 0, '127.0.0.9', counted);
      assert.deepEqual([...new Set(lines.map((line) => line['result']))], ['failure']);
    }
    const loginsBefore = dovecots.map((dovecot) => dovecot.loginCount('alice'));
    // The right password now: refused unseen by any backend, on whichever instance answers.
    const blockedFrom = marks();
    const blocked = [];
    for (let i = 0; i < 4; i++) blocked.push(await through('127.0.0.9', alice.user, alice.pass));
    for (const { reply } of blocked) assert.match(reply, /^-ERR /);
    for (const [i, instance] of instances.entries()) {
      const refused = servedBy(blocked, instance);
      assert.ok(refused > 0, `instance ${instance.name} answered some of the blocked attempts`);
      const lines = await audits(instance, blockedFrom[i] ?? 0, '127.0.0.9', refused);
      assert.deepEqual([...new Set(lines.map((line) => line['result']))], ['blocked']);
    }
    assert.deepEqual(dovecots.map((dovecot) => dovecot.loginCount('alice')), loginsBefore);
  });

  test('one instance killed mid-session: the other serves, and the killed session lost no mail and deleted nothing', async () => {
    const { client, instance: killed } = await connectThrough(lb(), instances, '127.0.0.10');
    try {
      assert.equal(await logIn(client, alice.user, alice.pass), Reply.loggedIn);
      const alicesDovecot = dovecots[0]!;
      const before = maildirDigest(alicesDovecot, 'alice');
      assert.match(await client.command('STAT'), /^\+OK 3 /);
      assert.match((await client.multi('RETR 1')).status, /^\+OK/);
      assert.match(await client.command('DELE 1'), /^\+OK/);
      assert.match(await client.command('DELE 2'), /^\+OK/);
      const dovecotFrom = readFileSync(alicesDovecot.logFile, 'latin1').length;
      await killed.process.kill9();
      assert.ok(await client.closedWithin(10_000), 'the client sees its session end');
      // Dovecot ends the session as a disconnect, not a QUIT: nothing expunged.
      const logout = await alicesDovecot.whenLogged(() => /pop3\(alice\)[^\n]*Disconnected[^\n]*/.exec(readFileSync(alicesDovecot.logFile, 'latin1').slice(dovecotFrom))?.[0], 10_000);
      assert.ok(logout !== undefined, 'Dovecot logged the session end');
      assert.match(logout, /del=0\//);
      assert.deepEqual(maildirDigest(alicesDovecot, 'alice'), before, 'every message file is still there, unchanged');

      // HAProxy sends what the dead instance refuses to the other one (redispatch).
      for (let i = 0; i < 3; i++) {
        const next = await connectThrough(lb(), instances, '127.0.0.10');
        try {
          assert.notEqual(next.instance, killed);
          assert.equal(await logIn(next.client, alice.user, alice.pass), Reply.loggedIn);
          assert.match(await next.client.command('STAT'), /^\+OK 3 /);
        } finally {
          next.client.destroy();
        }
      }
    } finally {
      client.destroy();
    }
  });
});
