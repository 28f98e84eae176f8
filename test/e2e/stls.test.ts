/**
 * STLS on the plaintext listener (RFC 2595, RFC 8314): no credentials in clear, nothing sent in
 * clear survives the upgrade (CVE-2011-0411 class), and the state restarts inside TLS.
 * SECURITY-TESTS.md S-01..S-07, R-07, R-10, R-11.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { readFileSync } from 'node:fs';
import { startFakeBackend, legacyScript, type FakeBackend } from '../harness/fake-backend.js';
import { startTestProxy, type TestProxy } from '../harness/popwarden.js';
import { RawClient } from '../harness/raw-client.js';

describe('STLS listener', () => {
  let backend: FakeBackend;
  let proxy: TestProxy;

  before(async () => {
    backend = await startFakeBackend(legacyScript({ apop: true, cramMd5: true }));
    proxy = await startTestProxy({
      backend: { host: backend.host, port: backend.port },
      timeouts: { tlsHandshakeMs: 1_500 },
    });
  });
  after(async () => {
    await proxy.stop();
    await backend.stop();
  });

  const connect = async (): Promise<RawClient> => {
    const client = await RawClient.plain(proxy.host, proxy.stlsPort);
    await client.readLine();
    return client;
  };

  test('the plaintext greeting is popwarden\'s own and carries no APOP timestamp (S-07, R-01)', async () => {
    const client = await RawClient.plain(proxy.host, proxy.stlsPort);
    const greeting = await client.readLine();
    assert.equal(greeting, '+OK popwarden test ready');
    assert.doesNotMatch(greeting, /</);
    client.destroy();
  });

  test('CAPA before TLS offers STLS and neither USER nor SASL (R-07)', async () => {
    const client = await connect();
    const status = await client.command('CAPA');
    assert.equal(status.startsWith('+OK'), true);
    const body = (await client.readUntilTerminator()).toString('latin1').split('\r\n');
    assert.ok(body.includes('STLS'));
    assert.ok(body.includes('RESP-CODES') && body.includes('AUTH-RESP-CODE'));
    assert.ok(!body.includes('USER'));
    assert.ok(!body.some((l) => l.startsWith('SASL')));
    client.destroy();
  });

  test('USER, PASS, APOP and AUTH before TLS are refused and reach no backend (R-11)', async () => {
    const before = backend.connections().length;
    const client = await connect();
    for (const command of ['USER alice', 'PASS s3cret!pw', 'APOP alice 0123456789abcdef0123456789abcdef', 'AUTH PLAIN AGFsaWNlAHMzY3JldCFwdw==', 'AUTH LOGIN']) {
      assert.equal(await client.command(command), '-ERR [AUTH] TLS required: use STLS', command);
    }
    client.destroy();
    assert.equal(backend.connections().length, before);
    assert.doesNotMatch(proxy.logText(), /s3cret|AGFsaWNlAHMzY3JldCFwdw/);
  });

  test('a command pipelined behind STLS is discarded, not run inside TLS (S-01)', async () => {
    const client = await connect();
    client.write('STLS\r\nCAPA\r\n');
    assert.equal(await client.readLine(), '+OK Begin TLS negotiation');
    assert.equal(client.unread().length, 0, 'nothing else in clear');
    await client.upgrade(proxy.caFile);
    assert.equal(await client.silentFor(500), true, 'the injected CAPA got no reply inside TLS');
    const status = await client.command('CAPA');
    assert.match(status, /^\+OK/);
    await client.readUntilTerminator();
    assert.equal(await client.silentFor(200), true, 'exactly one CAPA reply');
    client.destroy();
  });

  test('credentials injected behind STLS never reach the backend and are not logged (S-02)', async () => {
    const before = backend.connections().length;
    const client = await connect();
    client.write('STLS\r\nUSER victim\r\nPASS guess-injected\r\n');
    assert.equal(await client.readLine(), '+OK Begin TLS negotiation');
    await client.upgrade(proxy.caFile);
    assert.equal(await client.silentFor(400), true);
    assert.equal(await client.command('PASS x'), '-ERR Send USER first', 'no USER survived the upgrade (S-04)');
    client.destroy();
    assert.equal(backend.connections().length, before);
    assert.doesNotMatch(proxy.logText(), /guess-injected/);
  });

  test('a partial line sent before the handshake does not prefix the first TLS command (S-03)', async () => {
    const client = await connect();
    client.write('STLS\r\nUSER atta');
    assert.equal(await client.readLine(), '+OK Begin TLS negotiation');
    await client.upgrade(proxy.caFile);
    const status = await client.command('CAPA');
    assert.match(status, /^\+OK Capability/);
    const body = (await client.readUntilTerminator()).toString('latin1');
    assert.match(body, /USER\r\n/, 'inside TLS CAPA lists USER');
    assert.doesNotMatch(body, /STLS/, 'and no longer STLS');
    client.destroy();
  });

  test('after the upgrade a second STLS is refused and login works (R-10)', async () => {
    const client = await connect();
    assert.equal(await client.command('STLS'), '+OK Begin TLS negotiation');
    await client.upgrade(proxy.caFile);
    assert.equal(await client.command('STLS'), '-ERR Command not permitted when TLS is active');
    assert.equal(await client.command('USER alice'), '+OK Send PASS');
    assert.equal(await client.command('PASS s3cret!pw'), '+OK Logged in');
    assert.equal(await client.command('STLS'), '-ERR Command not permitted after login');
    assert.match(await client.command('STAT'), /^\+OK 3 /);
    client.destroy();
  });

  test('plaintext after +OK instead of a ClientHello fails the handshake, no reply in clear (S-05)', async () => {
    const client = await connect();
    assert.equal(await client.command('STLS'), '+OK Begin TLS negotiation');
    client.write('CAPA\r\n');
    assert.equal(await client.closedWithin(3_000), true);
    assert.equal(client.unread().includes('+OK'), false);
  });

  test('a silent client after STLS is closed at the handshake deadline (S-06)', async () => {
    const client = await connect();
    assert.equal(await client.command('STLS'), '+OK Begin TLS negotiation');
    const started = Date.now();
    assert.equal(await client.closedWithin(4_000), true);
    assert.ok(Date.now() - started >= 1_000, 'not before the deadline');
  });

  test('a TLS ClientHello on the plaintext port is closed with a logged reason', async () => {
    const socket = netConnect({ host: proxy.host, port: proxy.stlsPort });
    await new Promise((resolve) => socket.once('connect', resolve));
    await new Promise((resolve) => socket.once('data', resolve)); // greeting
    socket.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00]));
    await new Promise((resolve) => socket.once('close', resolve));
    assert.match(proxy.logText(), /"reason":"tls-on-plaintext-port"/);
  });

  test('APOP is refused inside TLS too: popwarden never offers a timestamp (S-07, R-14)', async () => {
    const client = await connect();
    assert.equal(await client.command('STLS'), '+OK Begin TLS negotiation');
    await client.upgrade(proxy.caFile);
    assert.equal(await client.command('APOP alice 0123456789abcdef0123456789abcdef'), '-ERR APOP is not available, use USER/PASS or AUTH');
    client.destroy();
  });

  test('plaintext sent to the implicit-TLS port never gets a greeting in clear (R-01)', async () => {
    const client = await RawClient.plain(proxy.host, proxy.tlsPort);
    client.write('CAPA\r\n');
    assert.equal(await client.closedWithin(3_000), true);
    assert.equal(client.all().includes('+OK'), false);
  });

  test('ALPN other than pop3 is refused with alert 120 on both ports; none or pop3 is fine (X-05)', async () => {
    const handshake = (socket: Socket | undefined, port: number, alpn: string[] | undefined) =>
      new Promise<string>((resolve) => {
        const client = tlsConnect({
          ...(socket === undefined ? { host: proxy.host, port } : { socket }),
          ca: readFileSync(proxy.caFile),
          servername: 'localhost',
          ...(alpn === undefined ? {} : { ALPNProtocols: alpn }),
        });
        client.once('secureConnect', () => {
          resolve(`ok ${client.alpnProtocol || 'none'}`);
          client.destroy();
        });
        client.once('error', (error: Error & { code?: string }) => resolve(error.code ?? 'error'));
      });
    assert.equal(await handshake(undefined, proxy.tlsPort, ['http/1.1']), 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL');
    assert.equal(await handshake(undefined, proxy.tlsPort, ['pop3']), 'ok pop3');
    assert.equal(await handshake(undefined, proxy.tlsPort, undefined), 'ok none');
    const viaStls = async (alpn: string[] | undefined): Promise<string> => {
      const plain = netConnect({ host: proxy.host, port: proxy.stlsPort });
      await new Promise((resolve) => plain.once('data', resolve)); // greeting
      plain.write('STLS\r\n');
      await new Promise((resolve) => plain.once('data', resolve)); // +OK
      return handshake(plain, 0, alpn);
    };
    assert.equal(await viaStls(['http/1.1']), 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL');
    assert.equal(await viaStls(undefined), 'ok none');
  });

  test('a client that resets right after STLS cannot crash popwarden', async () => {
    for (let i = 0; i < 50; i++) {
      const socket = netConnect({ host: proxy.host, port: proxy.stlsPort });
      socket.on('error', () => undefined);
      await new Promise((resolve) => socket.once('data', resolve)); // greeting
      socket.write('STLS\r\n');
      socket.resetAndDestroy();
      await new Promise((resolve) => socket.once('close', resolve));
    }
    // Still serving: a normal client gets its greeting and a CAPA.
    const client = await connect();
    assert.match(await client.command('CAPA'), /^\+OK/);
    client.destroy();
  });

  test('STLS on the implicit-TLS port is refused (R-10)', async () => {
    const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
    await client.readLine();
    assert.equal(await client.command('STLS'), '-ERR Command not permitted when TLS is active');
    client.destroy();
  });
});
