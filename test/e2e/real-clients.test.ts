/**
 * Real clients through popwarden to a real Dovecot ('all' profile): Python poplib, curl,
 * fetchmail and openssl s_client fetch alice's three sample messages (dot lines, ~5 MB, 8-bit
 * UTF-8 with a 2,000-character line) over implicit TLS and over STLS, and what each one stored
 * must equal the maildrop byte for byte. Then the refusals: a client that trusts another CA
 * never logs in, and curl without --ssl-reqd cannot log in on the STLS port.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import {
  assertSameMessages,
  fetchWithCurl,
  fetchWithFetchmail,
  fetchWithOpenssl,
  fetchWithPoplib,
  type ClientOptions,
  type ClientResult,
} from '../harness/clients.js';
import { startDovecot } from '../harness/dovecot.js';
import { sampleMaildrop } from '../harness/maildrop.js';
import { startTestProxy } from '../harness/popwarden.js';
import { scratchDir } from '../harness/scratch.js';
import { sharedBySuite } from '../harness/suite.js';

const { alice, bob } = sampleMaildrop();

/** What a failed client run said, for assertion messages. */
const why = (r: ClientResult): string => `exit ${r.exitCode}\n${r.stderr.slice(-2_000)}\n${r.transcript.slice(-2_000)}`;

describe('real clients through popwarden to Dovecot', { timeout: 300_000 }, () => {
  const suite = sharedBySuite(async (keep) => {
    const dovecot = keep(await startDovecot({ profile: 'all' }));
    const proxy = keep(await startTestProxy({ backend: { host: dovecot.host, port: dovecot.port } }));
    /** A CA that did not sign popwarden's certificate (same subject and SANs, other key). */
    const wrongCaDir = scratchDir('popwarden-wrong-ca');
    const wrongCa = path.join(wrongCaDir, 'cert.pem');
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout', path.join(wrongCaDir, 'key.pem'), '-out', wrongCa,
    ], { stdio: 'ignore' });
    return { dovecot, proxy, wrongCa };
  });

  const tlsPort = (): ClientOptions => {
    const { proxy } = suite();
    return { host: proxy.host, port: proxy.tlsPort, mode: 'implicit', user: alice.user, pass: alice.pass, caFile: proxy.caFile, timeoutMs: 60_000 };
  };
  const stlsPort = (): ClientOptions => {
    const { proxy } = suite();
    return { host: proxy.host, port: proxy.stlsPort, mode: 'stls', user: alice.user, pass: alice.pass, caFile: proxy.caFile, timeoutMs: 60_000 };
  };

  /** popwarden's audit lines (event "login") written since log line `from`. */
  const loginAudits = (from: number): Record<string, unknown>[] => suite().proxy.logs().slice(from).filter((l) => l['event'] === 'login');

  /**
   * Runs `fetch`, checks the messages, checks that exactly `logins` more alice logins reached
   * Dovecot, and that popwarden audited each as a success with the client mechanism `mechanism`.
   */
  const fetchesAlice = async (
    fetch: () => Promise<ClientResult>,
    mechanism: 'user' | 'plain' | 'login',
    logins = 1,
  ): Promise<ClientResult> => {
    const { dovecot, proxy } = suite();
    const before = dovecot.loginCount('alice');
    const logStart = proxy.logs().length;
    const r = await fetch();
    assert.ok(r.ok, why(r));
    assertSameMessages(r, alice.messages);
    // Dovecot writes its log line asynchronously (log process).
    await dovecot.whenLogged(() => (dovecot.loginCount('alice') >= before + logins ? true : undefined), 3_000);
    assert.equal(dovecot.loginCount('alice'), before + logins, 'each client session is one backend login');
    const audits = loginAudits(logStart);
    assert.equal(audits.length, logins, JSON.stringify(audits));
    for (const a of audits) {
      assert.equal(a['result'], 'success');
      assert.equal(a['clientMechanism'], mechanism, `${r.client} logged in to popwarden with ${String(a['clientMechanism'])}`);
      assert.match(String(a['tls']), /^TLSv1\.[23]$/);
    }
    return r;
  };

  describe('poplib', () => {
    for (const auth of ['user', 'plain', 'login'] as const) {
      test(`implicit TLS, ${auth}`, async () => {
        await fetchesAlice(() => fetchWithPoplib({ ...tlsPort(), auth }), auth);
      });
      test(`STLS, ${auth}`, async () => {
        await fetchesAlice(() => fetchWithPoplib({ ...stlsPort(), auth }), auth);
      });
    }
  });

  describe('curl', () => {
    // Without a message number curl LISTs, then one run per RETR: four logins in all.
    // Left to itself curl prefers SASL PLAIN among what CAPA offers (SASL PLAIN LOGIN).
    test('pop3s:// to the implicit-TLS port (curl picks SASL PLAIN from CAPA)', async () => {
      await fetchesAlice(() => fetchWithCurl(tlsPort()), 'plain', 4);
    });
    test('pop3:// with --ssl-reqd to the STLS port', async () => {
      await fetchesAlice(() => fetchWithCurl(stlsPort()), 'plain', 4);
    });
    for (const auth of ['plain', 'login'] as const) {
      test(`pop3s:// forcing AUTH=${auth.toUpperCase()}`, async () => {
        await fetchesAlice(() => fetchWithCurl({ ...tlsPort(), auth }), auth, 4);
      });
    }
  });

  describe('fetchmail', () => {
    // fetchmail has no SASL PLAIN/LOGIN for POP3: "auth any" ends at USER/PASS.
    test('implicit TLS (ssl)', async () => {
      await fetchesAlice(() => fetchWithFetchmail(tlsPort()), 'user');
    });
    test('STLS (sslproto without ssl makes STLS mandatory)', async () => {
      await fetchesAlice(() => fetchWithFetchmail(stlsPort()), 'user');
    });
  });

  describe('openssl s_client', () => {
    for (const auth of ['user', 'plain', 'login'] as const) {
      test(`implicit TLS, ${auth}`, async () => {
        await fetchesAlice(() => fetchWithOpenssl({ ...tlsPort(), auth }), auth);
      });
      test(`-starttls pop3, ${auth}`, async () => {
        await fetchesAlice(() => fetchWithOpenssl({ ...stlsPort(), auth }), auth);
      });
    }
  });

  test("bob's single message, with every client", async () => {
    const { dovecot } = suite();
    const bobOn = (o: ClientOptions): ClientOptions => ({ ...o, user: bob.user, pass: bob.pass });
    const before = dovecot.loginCount('bob');
    const runs = [
      await fetchWithPoplib(bobOn(tlsPort())),
      await fetchWithCurl(bobOn(stlsPort())),
      await fetchWithFetchmail(bobOn(tlsPort())),
      await fetchWithOpenssl(bobOn(stlsPort())),
    ];
    for (const r of runs) {
      assert.ok(r.ok, `${r.client}: ${why(r)}`);
      assertSameMessages(r, bob.messages);
    }
    assert.ok(dovecot.loginCount('bob') > before);
  });

  test('every client refuses popwarden when it trusts another CA, and nothing logs in', async () => {
    const { dovecot, wrongCa } = suite();
    const before = dovecot.loginCount();
    const wrong = (o: ClientOptions): ClientOptions => ({ ...o, caFile: wrongCa, timeoutMs: 30_000 });
    const runs = [
      await fetchWithPoplib(wrong(tlsPort())),
      await fetchWithPoplib(wrong(stlsPort())),
      await fetchWithCurl(wrong(tlsPort())),
      await fetchWithCurl(wrong(stlsPort())),
      await fetchWithFetchmail(wrong(tlsPort())),
      await fetchWithFetchmail(wrong(stlsPort())),
      await fetchWithOpenssl(wrong(tlsPort())),
      await fetchWithOpenssl(wrong(stlsPort())),
    ];
    for (const r of runs) {
      assert.equal(r.ok, false, `${r.client} accepted a certificate its CA did not sign: ${why(r)}`);
      assert.equal(r.messages.length, 0, `${r.client} stored messages`);
    }
    // curl: 60 = peer certificate cannot be authenticated with the given CA.
    assert.equal(runs[2]!.exitCode, 60, why(runs[2]!));
    assert.equal(runs[3]!.exitCode, 60, why(runs[3]!));
    assert.match(runs[0]!.stderr, /CERTIFICATE_VERIFY_FAILED/);
    // The wait is the subject: a login that should not happen has no event to await, and Dovecot
    // logs asynchronously, so it gets a moment to show one.
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(dovecot.loginCount(), before, 'no client login may reach the backend');
  });

  test('curl pop3:// without --ssl-reqd cannot log in on the STLS port (R-11)', async () => {
    const { dovecot, proxy } = suite();
    const before = dovecot.loginCount();
    const r = await fetchWithCurl({ ...stlsPort(), mode: 'plain', timeoutMs: 30_000 });
    assert.equal(r.ok, false, why(r));
    // 67 = CURLE_LOGIN_DENIED: CAPA before STLS offers neither USER nor SASL, so curl has nothing
    // to try; if it sent USER anyway popwarden answers -ERR [AUTH] TLS required.
    assert.equal(r.exitCode, 67, why(r));
    assert.equal(r.messages.length, 0);
    // As above: proving an absence, Dovecot gets a moment to log a login that must not come.
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(dovecot.loginCount(), before, 'no backend login without TLS on the client side');
    assert.ok(!proxy.logText().includes(alice.pass), 'the password is never logged');
  });
});
