/**
 * Every path that logs in to a backend over TLS checks the certificate against the backend's
 * own address, not "localhost": the STLS upgrade (BackendLink.startTls) and implicit TLS
 * (dialBackend), as the probe does (real-backend-probe-tls.test.ts). Real Dovecot whose
 * certificate names only DNS:localhost, reached as 127.0.0.1: a man in the middle holding a
 * localhost certificate from the backend CA must not get the password (auth: plain, so the
 * password would go in clear inside that TLS).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';
import { startTestProxy, type TestProxy } from '../harness/popwarden.js';
import { RawClient } from '../harness/raw-client.js';
import { sampleMaildrop } from '../harness/maildrop.js';
import type { BackendConfig } from '../../src/config/types.js';

const { alice } = sampleMaildrop();

describe('a backend reached as 127.0.0.1 whose certificate names only localhost', { timeout: 120_000 }, () => {
  let dovecot: Dovecot;
  const proxies: TestProxy[] = [];
  before(async () => {
    dovecot = await startDovecot({ profile: 'stls', pop3sPort: true, subjectAltName: 'DNS:localhost', accounts: ['alice'] });
  });
  after(async () => {
    for (const proxy of proxies) await proxy.stop();
    await dovecot.stop();
  });

  /** The client's reply to PASS, and what popwarden logged. */
  async function login(tls: 'starttls' | 'implicit', extra: Partial<BackendConfig> = {}): Promise<{ reply: string; log: string }> {
    const port = tls === 'implicit' ? dovecot.pop3sPort! : dovecot.port;
    const proxy = await startTestProxy({ backend: { host: '127.0.0.1', port, tls, auth: 'plain', caFile: dovecot.caFile!, ...extra } });
    proxies.push(proxy);
    const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
    try {
      await client.readLine();
      await client.command(`USER ${alice.user}`);
      const reply = await client.command(`PASS ${alice.pass}`, 15_000);
      return { reply, log: proxy.logText() };
    } finally {
      client.destroy();
    }
  }

  for (const tls of ['starttls', 'implicit'] as const) {
    test(`${tls}: the login is refused with [SYS/TEMP] and Dovecot never sees it; with tls_servername: localhost it goes through`, async () => {
      const before = dovecot.loginCount('alice');
      const refused = await login(tls);
      assert.match(refused.reply, /^-ERR \[SYS\/TEMP\]/);
      assert.match(refused.log, /ERR_TLS_CERT_ALTNAME_INVALID|IP: 127\.0\.0\.1 is not in the cert's list/);
      assert.equal(dovecot.loginCount('alice'), before, 'no password reached the backend');
      assert.equal((await login(tls, { tlsServerName: 'localhost' })).reply, '+OK Logged in');
    });
  }
});
