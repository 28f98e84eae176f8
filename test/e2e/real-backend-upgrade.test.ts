/**
 * What crosses the link from popwarden to a real Dovecot, proved by a recording tap between the
 * two: APOP and CRAM-MD5 keep the password off the wire, CRAM-MD5 wins when both are offered,
 * a cleartext mechanism is used only where the link may carry it and otherwise the login fails
 * closed, and STLS to the backend encrypts everything after `STLS` with a verified certificate.
 * SECURITY-TESTS.md B-01, B-02, B-07, B-09, R-15.
 *
 * The tap connects to Dovecot from 127.0.0.1, so Dovecot sees a loopback client and counts it as
 * secured; none of these tests depends on that. What they check is what popwarden chose to send,
 * and that is decided on popwarden's side (the tap's address is loopback too, hence
 * `trustLoopback: false` where a non-loopback link is meant). `sourceAddress` would not help:
 * the tap, not popwarden, opens the connection Dovecot sees.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { assertSameMessages, fetchWithPoplib } from '../harness/clients.js';
import { startDovecot, type Dovecot, type DovecotProfile } from '../harness/dovecot.js';
import { dotStuff, sampleMaildrop } from '../harness/maildrop.js';
import { startChain, testCertificate, type Chain as TappedChain, type BackendOverrides, type ProxyOverrides, type TestProxy } from '../harness/popwarden.js';
import { RawClient } from '../harness/raw-client.js';
import type { Tap } from '../harness/tap.js';

const { alice } = sampleMaildrop();
const PASSWORD = alice.pass;

/** Every form in which the password could be recognised on the backend link. */
const PASSWORD_FORMS: readonly string[] = [
  PASSWORD,
  Buffer.from(PASSWORD).toString('base64'),
  Buffer.from(PASSWORD).toString('hex'),
  Buffer.from(PASSWORD).toString('hex').toUpperCase(),
  Buffer.from(`\0alice\0${PASSWORD}`).toString('base64'), // AUTH PLAIN
  Buffer.from(`alice\0alice\0${PASSWORD}`).toString('base64'), // AUTH PLAIN with an authzid
];

/** Asserts that no form of the password is in `bytes`. */
function assertNoPassword(bytes: Buffer, where: string): void {
  const text = bytes.toString('latin1');
  for (const form of PASSWORD_FORMS) assert.ok(!text.includes(form), `${where} carries ${JSON.stringify(form)}`);
}

/** A Dovecot with a tap in front and popwarden in front of the tap. */
type Chain = TappedChain<Dovecot>;

/** Logs in to popwarden over implicit TLS with USER/PASS; returns the client and PASS's reply. */
async function login(proxy: TestProxy, user = alice.user, pass = PASSWORD): Promise<{ client: RawClient; reply: string }> {
  const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
  assert.match(await client.readLine(), /^\+OK /);
  assert.match(await client.command(`USER ${user}`), /^\+OK/);
  const reply = await client.command(`PASS ${pass}`, 15_000);
  return { client, reply };
}

/** After a successful login: every message RETRs byte-identical (still dot-stuffed on the wire), then QUIT. */
async function retrAll(client: RawClient): Promise<void> {
  assert.match(await client.command('STAT'), new RegExp(`^\\+OK ${alice.messages.length} \\d+$`));
  for (const m of alice.messages) {
    const { status, body } = await client.multi(`RETR ${m.n}`, 30_000);
    assert.match(status, /^\+OK/);
    assert.ok(body.equals(dotStuff(m.bytes)), `RETR ${m.n} differs from the maildrop`);
  }
  assert.match(await client.command('QUIT'), /^\+OK/);
  await client.closedWithin(5_000);
}

/** Dovecot logs asynchronously: wait until it shows `n` logins (or give up after 3 s). */
async function waitForLogins(dovecot: Dovecot, n: number): Promise<{ user: string; method: string }[]> {
  await dovecot.whenLogged(() => (dovecot.loginCount() >= n ? true : undefined), 3_000);
  return dovecot.logins();
}

/** Login processes Dovecot has logged the end of (pop3-login's "Disconnected" lines). */
const loginProcessEnds = (dovecot: Dovecot): number =>
  (readFileSync(dovecot.logFile, 'utf8').match(/pop3-login: Info: Disconnected/g) ?? []).length;

/** The commands popwarden sent on the tap, as text lines (only meaningful for a cleartext link). */
const sentLines = (tap: Tap): string[] => tap.bytesClientToServer().toString('latin1').split('\r\n').filter((l) => l !== '');

describe('backend link through a tap to real Dovecot', { timeout: 180_000 }, () => {
  const running: { stop(): Promise<void> }[] = [];
  const dovecots = new Map<DovecotProfile, Dovecot>();
  after(async () => {
    for (const r of running.reverse()) await r.stop();
    for (const d of dovecots.values()) await d.stop();
  });
  const dovecotFor = async (profile: DovecotProfile): Promise<Dovecot> => {
    let d = dovecots.get(profile);
    if (d === undefined) {
      d = await startDovecot({ profile });
      dovecots.set(profile, d);
    }
    return d;
  };
  /** A fresh tap and popwarden (so the tap records one test only) in front of the profile's Dovecot. */
  const chain = async (
    profile: DovecotProfile,
    backend: Omit<BackendOverrides, 'host' | 'port'> = {},
  ): Promise<Chain> => {
    const c = await startChain(await dovecotFor(profile), backend);
    running.push(c);
    return c;
  };

  /**
   * One login through the chain that succeeds and fetches everything: what Dovecot logged for
   * it must be exactly one login by alice with `method` (as Dovecot names it).
   */
  const loginAndFetch = async ({ server: dovecot, proxy }: Chain, method: string): Promise<void> => {
    const before = dovecot.loginCount();
    const { client, reply } = await login(proxy);
    assert.equal(reply, '+OK Logged in');
    await retrAll(client);
    const logins = await waitForLogins(dovecot, before + 1);
    assert.deepEqual(logins.slice(before), [{ user: 'alice', method }]);
  };

  /**
   * One login that popwarden must refuse with [SYS/TEMP] before Dovecot judges anything: once
   * Dovecot has logged the end of that login process, it has logged no login.
   */
  const loginRefused = async ({ server: dovecot, proxy }: Chain): Promise<void> => {
    const before = dovecot.loginCount();
    const endsBefore = loginProcessEnds(dovecot);
    const { client, reply } = await login(proxy);
    assert.match(reply, /^-ERR \[SYS\/TEMP\] /);
    client.destroy();
    await dovecot.whenLogged(() => (loginProcessEnds(dovecot) > endsBefore ? true : undefined));
    assert.equal(dovecot.loginCount(), before, 'Dovecot saw no login');
  };

  /**
   * Successful logins: the profile, popwarden's backend settings, Dovecot's name for the mechanism,
   * and what the tap must show. The entries' checks look alike because each pins one mechanism's
   * wire form.
   */
  const successes: {
    readonly name: string;
    readonly profile: DovecotProfile;
    readonly backend?: Omit<BackendOverrides, 'host' | 'port'>;
    readonly method: string;
    readonly beforeLogin?: (chain: Chain) => void;
    readonly check: (chain: Chain) => void;
  }[] = [
    {
      name: "'apop-only': APOP, and the password crosses in no form",
      profile: 'apop-only',
      method: 'APOP',
      check: ({ tap }) => {
        const lines = sentLines(tap);
        assert.ok(lines.some((l) => /^APOP alice [0-9a-f]{32}$/.test(l)), lines.join('\n'));
        assert.ok(!lines.some((l) => /^(USER|PASS|AUTH)\b/.test(l)), lines.join('\n'));
        assertNoPassword(tap.bytesClientToServer(), 'the backend link');
      },
    },
    {
      name: "'cram-md5-only': AUTH CRAM-MD5 with one HMAC response, and no password (R-15)",
      profile: 'cram-md5-only',
      method: 'CRAM-MD5',
      check: ({ tap }) => {
        const lines = sentLines(tap);
        const at = lines.indexOf('AUTH CRAM-MD5');
        assert.ok(at >= 0, lines.join('\n'));
        // The response is base64("alice " + HMAC-MD5(password, challenge)), checked against the
        // challenge Dovecot actually sent.
        const challengeLine = tap.bytesServerToClient().toString('latin1').split('\r\n').find((l) => l.startsWith('+ '));
        assert.ok(challengeLine !== undefined);
        const challenge = Buffer.from(challengeLine.slice(2), 'base64');
        const expected = `alice ${createHmac('md5', PASSWORD).update(challenge).digest('hex')}`;
        assert.equal(Buffer.from(lines[at + 1]!, 'base64').toString('latin1'), expected);
        assert.ok(!lines.some((l) => /^(USER|PASS|APOP|AUTH PLAIN|AUTH LOGIN)\b/.test(l)), lines.join('\n'));
        assertNoPassword(tap.bytesClientToServer(), 'the backend link');
      },
    },
    {
      name: "'all': CRAM-MD5 is preferred over the APOP timestamp and the cleartext mechanisms (B-02)",
      profile: 'all',
      method: 'CRAM-MD5',
      beforeLogin: ({ tap }) => assert.equal(tap.connections, 0, 'popwarden does not dial the backend before a login'),
      check: ({ tap }) => {
        // Dovecot did offer APOP: its greeting carries a timestamp.
        assert.match(tap.bytesServerToClient().toString('latin1'), /^\+OK .*<[^<>]+@[^<>]+>\r\n/);
        assert.ok(sentLines(tap).includes('AUTH CRAM-MD5'));
        assertNoPassword(tap.bytesClientToServer(), 'the backend link');
      },
    },
    {
      // Dovecot logs USER/PASS and AUTH PLAIN both as PLAIN; the tap says which one it was:
      // 'user-only' offers SASL PLAIN LOGIN, and popwarden prefers AUTH PLAIN over USER/PASS.
      name: "'user-only' on loopback (trustLoopback default): a cleartext mechanism, and mail flows",
      profile: 'user-only',
      method: 'PLAIN',
      check: ({ tap }) => {
        const lines = sentLines(tap);
        assert.ok(lines.includes(`AUTH PLAIN ${Buffer.from(`\0alice\0${PASSWORD}`).toString('base64')}`), lines.join('\n'));
      },
    },
    {
      name: "'user-only' with backend auth forced to 'user': USER/PASS on the trusted loopback link",
      profile: 'user-only',
      backend: { auth: 'user' },
      method: 'PLAIN',
      check: ({ tap }) => {
        const lines = sentLines(tap);
        assert.ok(lines.includes('USER alice') && lines.includes(`PASS ${PASSWORD}`), lines.join('\n'));
      },
    },
  ];
  for (const c of successes) {
    test(c.name, async () => {
      const chained = await chain(c.profile, c.backend);
      c.beforeLogin?.(chained);
      await loginAndFetch(chained, c.method);
      c.check(chained);
    });
  }

  test("'user-only' with trustLoopback: false fails closed with [SYS/TEMP], no password sent (B-01, B-09)", async () => {
    const chained = await chain('user-only', { trustLoopback: false });
    const { tap, proxy } = chained;
    await loginRefused(chained);
    assert.ok(tap.connections >= 1, 'popwarden did reach the backend (greeting, CAPA)');
    const lines = sentLines(tap);
    assert.ok(!lines.some((l) => /^(USER|PASS|AUTH|APOP)\b/i.test(l)), lines.join('\n'));
    assertNoPassword(tap.bytesClientToServer(), 'the backend link');
    assert.match(proxy.logText(), /refusing to log in to the backend/);
  });

  describe("'stls' profile: popwarden upgrades the backend link (B-07)", () => {
    /** Splits the tap's client→server bytes at `STLS\r\n`: what went in clear, and what followed. */
    const splitAtStls = (tap: Tap): { clear: string; after: Buffer } => {
      const all = tap.bytesClientToServer();
      const at = all.indexOf('STLS\r\n');
      assert.ok(at >= 0, `no STLS on the link: ${JSON.stringify(all.toString('latin1').slice(0, 200))}`);
      return { clear: all.subarray(0, at).toString('latin1'), after: all.subarray(at + 'STLS\r\n'.length) };
    };
    /** Everything after STLS is TLS records: it starts with a handshake record and shows no POP3 command. */
    const assertEncryptedAfterStls = (tap: Tap): void => {
      const { clear, after } = splitAtStls(tap);
      assert.equal(clear, 'CAPA\r\n', 'in clear only CAPA precedes STLS');
      assert.ok(after.length > 0, 'something follows STLS');
      assert.equal(after[0], 0x16, 'the first byte after STLS is a TLS handshake record');
      assert.equal(after[1], 0x03, 'TLS record version major byte');
      const text = after.toString('latin1');
      for (const word of ['USER', 'PASS', 'AUTH', 'APOP', 'CAPA', 'RETR']) assert.ok(!text.includes(word), `${word} after STLS in clear`);
      assertNoPassword(after, 'the link after STLS');
      assertNoPassword(tap.bytesClientToServer(), 'the backend link');
    };

    test('with caFile = Dovecot\'s CA: STLS, login, byte-identical RETR, nothing readable after STLS', async () => {
      const dovecot = await dovecotFor('stls');
      const chained = await chain('stls', { caFile: dovecot.caFile! });
      // Inside TLS popwarden still prefers CRAM-MD5 among what the 'stls' profile offers.
      await loginAndFetch(chained, 'CRAM-MD5');
      assertEncryptedAfterStls(chained.tap);
      // Dovecot's own login line (loginAndFetch waited for it) says the session was under TLS.
      const loginLine = readFileSync(dovecot.logFile, 'utf8').split('\n').filter((l) => l.includes('Login: user=<alice>')).at(-1);
      assert.match(loginLine ?? '', /\bTLS\b/, loginLine);
    });

    test('poplib through the STLS-upgraded backend link gets the maildrop byte for byte', async () => {
      const dovecot = await dovecotFor('stls');
      const { tap, proxy } = await chain('stls', { caFile: dovecot.caFile! });
      const r = await fetchWithPoplib({
        host: proxy.host, port: proxy.tlsPort, mode: 'implicit', user: alice.user, pass: PASSWORD, caFile: proxy.caFile, auth: 'user',
      });
      assert.ok(r.ok, r.stderr);
      assertSameMessages(r, alice.messages);
      assertEncryptedAfterStls(tap);
    });

    test('with a CA that did not sign Dovecot\'s certificate: [SYS/TEMP], and no fallback to clear', async () => {
      // popwarden's own test certificate: valid for 127.0.0.1, but not Dovecot's issuer.
      const chained = await chain('stls', { caFile: testCertificate().caFile });
      const { tap, proxy } = chained;
      await loginRefused(chained);
      assert.equal(tap.connections, 1, 'popwarden did not reconnect to try again without TLS');
      const { after } = splitAtStls(tap);
      assert.equal(after[0], 0x16, 'a ClientHello followed STLS');
      assertEncryptedAfterStls(tap);
      assert.match(proxy.logText(), /E_BACKEND_TLS/);
    });

    test('with tlsServerName that the certificate does not name: refused the same way', async () => {
      const dovecot = await dovecotFor('stls');
      const chained = await chain('stls', { caFile: dovecot.caFile!, tlsServerName: 'mail.example.org' });
      await loginRefused(chained);
      const { tap } = chained;
      assertEncryptedAfterStls(tap);
    });

    test('with tlsInsecure: true and no CA: the upgrade and the login work', async () => {
      const dovecot = await dovecotFor('stls');
      const { tap, proxy } = await chain('stls', { tlsInsecure: true });
      const before = dovecot.loginCount();
      const { client, reply } = await login(proxy);
      assert.equal(reply, '+OK Logged in');
      await retrAll(client);
      await waitForLogins(dovecot, before + 1);
      assert.equal(dovecot.loginCount(), before + 1);
      assertEncryptedAfterStls(tap);
    });
  });
});
