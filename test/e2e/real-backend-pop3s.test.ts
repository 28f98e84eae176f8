/**
 * `backend_tls: implicit`: popwarden in front of Dovecot's POP3S port, through a recording tap.
 * The link carries TLS from the first byte, so a cleartext mechanism is acceptable on it even for
 * a backend popwarden does not trust as loopback; a certificate it cannot verify ends the login.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';
import { startTap, type Tap } from '../harness/tap.js';
import { startTestProxy, testCertificate, type BackendOverrides, type ProxyOverrides, type TestProxy } from '../harness/popwarden.js';
import { RawClient } from '../harness/raw-client.js';
import { sampleMaildrop, dotStuff } from '../harness/maildrop.js';
import { createClientCertificate, createTestCa, type TestCa } from '../harness/test-ca.js';

const { alice } = sampleMaildrop();

describe('backend over implicit TLS (POP3S)', { timeout: 120_000 }, () => {
  let dovecot: Dovecot;
  const running: { stop(): Promise<void> }[] = [];

  before(async () => {
    dovecot = await startDovecot({ profile: 'stls', pop3sPort: true });
  });
  after(async () => {
    for (const part of running.reverse()) await part.stop();
    await dovecot.stop();
  });

  const chain = async (backend: Omit<BackendOverrides, 'host' | 'port'>): Promise<{ tap: Tap; proxy: TestProxy }> => {
    const tap = await startTap(dovecot.host, dovecot.pop3sPort!);
    const proxy = await startTestProxy({ backend: { host: tap.host, port: tap.port, tls: 'implicit', trustLoopback: false, ...backend } });
    running.push(tap, proxy);
    return { tap, proxy };
  };

  const login = async (proxy: TestProxy): Promise<{ client: RawClient; reply: string }> => {
    const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
    await client.readLine();
    await client.command(`USER ${alice.user}`);
    return { client, reply: await client.command(`PASS ${alice.pass}`, 15_000) };
  };

  test('a forced cleartext mechanism is allowed over TLS; the wire shows only TLS records', async () => {
    const { tap, proxy } = await chain({ caFile: dovecot.caFile!, auth: 'plain' });
    const { client, reply } = await login(proxy);
    assert.equal(reply, '+OK Logged in');
    const { status, body } = await client.multi('RETR 1', 15_000);
    assert.match(status, /^\+OK/);
    assert.ok(body.equals(dotStuff(alice.messages[0]!.bytes)));
    client.destroy();
    const sent = tap.bytesClientToServer();
    assert.equal(sent[0], 0x16, 'the first byte popwarden sends is a TLS handshake record');
    const text = sent.toString('latin1');
    for (const clear of ['AUTH', 'USER', 'PASS', 'CAPA', alice.pass]) assert.ok(!text.includes(clear), clear);
  });

  test('a certificate popwarden cannot verify ends the login with [SYS/TEMP], never a fallback', async () => {
    const { tap, proxy } = await chain({ caFile: testCertificate().caFile });
    const { client, reply } = await login(proxy);
    client.destroy();
    assert.match(reply, /^-ERR \[SYS\/TEMP\] /);
    assert.equal(tap.connections, 1);
    assert.ok(!tap.bytesClientToServer().toString('latin1').includes(alice.pass));
  });
});

describe('backend that demands a client certificate', { timeout: 120_000 }, () => {
  let dovecot: Dovecot;
  let ca: TestCa;
  let client: { certFile: string; keyFile: string };
  const running: { stop(): Promise<void> }[] = [];

  before(async () => {
    ca = createTestCa();
    client = createClientCertificate(ca, 'popwarden');
    dovecot = await startDovecot({ profile: 'stls', pop3sPort: true, clientCaFile: ca.caFile });
  });
  after(async () => {
    for (const part of running.reverse()) await part.stop();
    await dovecot.stop();
  });

  const tryLogin = async (backend: Omit<BackendOverrides, 'host' | 'port'>): Promise<string> => {
    const proxy = await startTestProxy({
      backend: { host: dovecot.host, port: dovecot.pop3sPort!, tls: 'implicit', caFile: dovecot.caFile!, ...backend },
    });
    running.push(proxy);
    const session = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
    await session.readLine();
    await session.command(`USER ${alice.user}`);
    const reply = await session.command(`PASS ${alice.pass}`, 15_000);
    session.destroy();
    return reply;
  };

  test('with backend_tls_cert/key popwarden logs in; without them the backend refuses', async () => {
    assert.equal(await tryLogin({ clientCertFile: client.certFile, clientKeyFile: client.keyFile }), '+OK Logged in');
    assert.doesNotMatch(await tryLogin({}), /^\+OK/);
  });
});
