/**
 * Hot reload in process: a RETR in flight finishes byte-identical across a reload, the next
 * connection sees the new certificate on both ports, and an invalid new set is refused with the
 * old certificate still served.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPopwarden, type ReloadableProxy } from '../../src/proxy.js';
import { loadTlsMaterial } from '../../src/net/tls-material.js';
import { createLogger } from '../../src/observability/log.js';
import { NO_METRICS } from '../../src/observability/metrics.js';
import { Writable } from 'node:stream';
import { connectPop } from '../harness/clients.js';
import { legacyScript, startFakeBackend, type FakeBackend } from '../harness/fake-backend.js';
import { dotStuff } from '../harness/maildrop.js';
import { makeNamedCertificate, servedFingerprint, testConfig } from '../harness/popwarden.js';

/** 20 MiB of ordinary 78-character lines. */
function bigMessage(): Buffer {
  const lineText = 'Subject-like line of a large message, 0123456789 abcdefghijklmnopqrstuvwxyz!\r\n';
  const header = Buffer.from('From: a@example.org\r\nSubject: big\r\n\r\n');
  const lines = Math.ceil((20 * 1024 * 1024) / lineText.length);
  return Buffer.concat([header, Buffer.from(lineText.repeat(lines))]);
}

describe('reload keeps live sessions and swaps certificates for new ones', { timeout: 120_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'popwarden-reload-'));
  const live = { certFile: join(dir, 'live.crt'), keyFile: join(dir, 'live.key') };
  const first = makeNamedCertificate(dir, 'first', ['localhost', '127.0.0.1']);
  const second = makeNamedCertificate(dir, 'second', ['localhost', '127.0.0.1']);
  const message = bigMessage();
  const reloads: boolean[] = [];
  const logLines: string[] = [];
  let release: () => void = () => undefined;
  const retrMidway = new Promise<void>((resolve) => (release = resolve));
  let continueRetr: () => void = () => undefined;
  const retrMayFinish = new Promise<void>((resolve) => (continueRetr = resolve));
  let backend: FakeBackend;
  let proxy: ReloadableProxy;
  let tlsPort = 0;
  let stlsPort = 0;

  before(async () => {
    copyFileSync(first.certFile, live.certFile);
    copyFileSync(first.keyFile, live.keyFile);
    backend = await startFakeBackend(
      legacyScript({
        accounts: { alice: { pass: 'secret', messages: [message] } },
        onCommand: async ({ conn, verb }) => {
          if (verb !== 'RETR') return false;
          const stuffed = dotStuff(message);
          const half = Math.floor(stuffed.length / 2);
          await conn.write(Buffer.concat([Buffer.from(`+OK ${message.length} octets\r\n`), stuffed.subarray(0, half)]));
          release();
          await retrMayFinish;
          await conn.write(stuffed.subarray(half)); // dotStuff() already ends with the terminator
          return true;
        },
      }),
    );
    const config = testConfig({ backend: { host: backend.host, port: backend.port }, tls: { ...live } });
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        logLines.push(...chunk.toString('utf8').split('\n').filter((l) => l !== ''));
        callback();
      },
    });
    const log = createLogger(process.env['RELOAD_DEBUG'] ? 'trace' : 'info', sink);
    proxy = await startPopwarden(config, {
      log,
      tls: await loadTlsMaterial(config, log),
      metrics: { ...NO_METRICS, configReload: (success) => void reloads.push(success) },
    });
    tlsPort = proxy.listeners.find((l) => l.config.kind === 'tls')!.address.port;
    stlsPort = proxy.listeners.find((l) => l.config.kind === 'stls')!.address.port;
  });
  after(async () => {
    if (process.env['RELOAD_DEBUG']) console.log(logLines.join('\n'));
    continueRetr();
    await proxy?.close();
    await backend?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the first certificate before any reload', async () => {
    assert.equal(await servedFingerprint(tlsPort), first.fingerprint256);
    assert.equal(await servedFingerprint(stlsPort, { stls: true }), first.fingerprint256);
  });

  it('a RETR of 20 MiB in flight finishes byte-identical across a reload; new connections get the new certificate', async () => {
    const client = await connectPop({ host: '127.0.0.1', port: tlsPort, tls: true, caFile: first.certFile });
    assert.match(await client.login('alice', 'secret', 'user'), /^\+OK/);
    const retr = client.multi('RETR 1');
    await retrMidway;

    copyFileSync(second.certFile, live.certFile);
    copyFileSync(second.keyFile, live.keyFile);
    const outcome = await proxy.reload();
    assert.equal(outcome.ok, true);
    assert.deepEqual(outcome.ok && outcome.needsRestart, []);
    assert.equal(await servedFingerprint(tlsPort), second.fingerprint256);
    assert.equal(await servedFingerprint(tlsPort, { servername: 'localhost' }), second.fingerprint256);
    assert.equal(await servedFingerprint(stlsPort, { stls: true }), second.fingerprint256);

    continueRetr();
    const { status, body } = await retr;
    assert.match(status, /^\+OK/);
    assert.equal(body.length, message.length);
    assert.ok(body.equals(message), 'the body differs from the message');
    assert.match(await client.command('QUIT'), /^\+OK/);
    client.close();
    assert.deepEqual(reloads, [true]);
  });

  it('refuses a key that does not match the new certificate, logs one line, and keeps serving the old one', async () => {
    copyFileSync(first.certFile, live.certFile); // the key on disk is still the second's
    const before = logLines.length;
    const outcome = await proxy.reload();
    assert.equal(outcome.ok, false);
    assert.match(outcome.ok ? '' : outcome.error, /does not belong to cert/);
    assert.deepEqual(reloads, [true, false]);
    const refused = logLines.slice(before).filter((l) => l.includes('reload refused'));
    assert.equal(refused.length, 1, logLines.slice(before).join('\n'));
    assert.equal(await servedFingerprint(tlsPort), second.fingerprint256);
    assert.equal(await servedFingerprint(stlsPort, { stls: true }), second.fingerprint256);
  });

  it('refuses a certificate file that is not PEM', async () => {
    writeFileSync(live.certFile, 'not a certificate\n');
    const outcome = await proxy.reload();
    assert.equal(outcome.ok, false);
    assert.deepEqual(reloads, [true, false, false]);
    assert.equal(await servedFingerprint(tlsPort), second.fingerprint256);
  });
});
