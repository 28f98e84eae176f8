import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { constants as cryptoConstants, createPrivateKey } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createNetServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { TLSSocket, connect, createServer, type ConnectionOptions } from 'node:tls';
import { generateSelfSigned } from '../../src/certs/self-signed.js';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { createLogger } from '../../src/observability/log.js';
import { loadTlsMaterial, type TlsMaterial } from '../../src/net/tls-material.js';
import { TlsMaterialError } from '../../src/tls/material-error.js';
import { MOZILLA_INTERMEDIATE_TLS12_CIPHERS } from '../../src/tls/policy.js';

const root = mkdtempSync(join(tmpdir(), 'popwarden-tls-context-'));
after(() => rmSync(root, { recursive: true, force: true }));
let counter = 0;

const quietLog = createLogger('silent');

function configWith(extra: string[]): Config {
  const result = loadConfig(['--backend', '127.0.0.1:1110', '--state-dir', join(root, `state-${++counter}`), '--timeouts-tls-handshake', '3s', ...extra], {});
  assert.ok(result.action === 'run');
  return result.config;
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** Connects and reports the negotiated protocol and cipher, or the error. */
function handshake(port: number, options: ConnectionOptions): Promise<{ protocol: string | null; cipher: string } | Error> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...options }, () => {
      resolve({ protocol: socket.getProtocol(), cipher: socket.getCipher().name });
      socket.destroy();
    });
    socket.on('error', resolve);
  });
}

describe('loadTlsMaterial with a generated certificate', async () => {
  const config = configWith([]);
  const material: TlsMaterial = await loadTlsMaterial(config, quietLog);
  const server = createServer(material.serverOptions, (socket) => socket.end());
  const port = await listen(server);
  after(() => server.close());

  it('sets the policy: TLS >= 1.2, Mozilla intermediate ciphers, no server order, curves, no renegotiation', () => {
    const options = material.serverOptions;
    assert.equal(options.minVersion, 'TLSv1.2');
    assert.equal(
      options.ciphers,
      'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305',
    );
    assert.equal(options.honorCipherOrder, false);
    assert.equal(options.ecdhCurve, 'X25519:prime256v1:secp384r1');
    assert.equal((options.secureOptions ?? 0) & cryptoConstants.SSL_OP_NO_RENEGOTIATION, cryptoConstants.SSL_OP_NO_RENEGOTIATION);
    assert.equal(typeof options.sessionIdContext, 'string');
    assert.equal(options.handshakeTimeout, 3_000);
  });

  it('negotiates TLS 1.3 with its default suites (listing only 1.2 suites must not disable 1.3)', async () => {
    const result = await handshake(port, {});
    assert.ok(!(result instanceof Error), String(result));
    assert.equal(result.protocol, 'TLSv1.3');
  });

  it('negotiates TLS 1.2 only with a listed suite', async () => {
    const result = await handshake(port, { maxVersion: 'TLSv1.2' });
    assert.ok(!(result instanceof Error), String(result));
    assert.equal(result.protocol, 'TLSv1.2');
    assert.ok((MOZILLA_INTERMEDIATE_TLS12_CIPHERS as readonly string[]).includes(result.cipher), result.cipher);
  });

  it('refuses CBC and non-forward-secret TLS 1.2 suites, and TLS 1.1', async () => {
    for (const ciphers of ['ECDHE-RSA-AES128-SHA', 'AES128-GCM-SHA256', 'AES256-SHA256']) {
      assert.ok((await handshake(port, { maxVersion: 'TLSv1.2', ciphers })) instanceof Error, ciphers);
    }
    const old = await handshake(port, { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' });
    assert.ok(old instanceof Error);
  });

  it('gives a secureContext that serves an STLS-style upgrade of a plain socket', async () => {
    const plain = createNetServer((raw) => {
      const upgraded = new TLSSocket(raw, { isServer: true, secureContext: material.secureContext });
      upgraded.on('secure', () => upgraded.end());
      upgraded.on('error', () => raw.destroy());
    });
    const plainPort = await listen(plain);
    after(() => plain.close());
    const result = await handshake(plainPort, { maxVersion: 'TLSv1.2' });
    assert.ok(!(result instanceof Error), String(result));
    assert.ok((MOZILLA_INTERMEDIATE_TLS12_CIPHERS as readonly string[]).includes(result.cipher));
  });

  it('reuses the generated pair on the next start', async () => {
    const again = await loadTlsMaterial(config, quietLog);
    assert.deepEqual(again.serverOptions.cert, material.serverOptions.cert);
  });
});

describe('loadTlsMaterial with operator files', () => {
  async function writePair(name: string, pem?: { certPem: string; keyPem: string }): Promise<{ cert: string; key: string }> {
    const pair = pem ?? (await generateSelfSigned(['pop.example.net']));
    const cert = join(root, `${name}-cert.pem`);
    const key = join(root, `${name}-key.pem`);
    writeFileSync(cert, pair.certPem);
    writeFileSync(key, pair.keyPem, { mode: 0o600 });
    return { cert, key };
  }

  it('loads a matching pair and logs its fingerprint', async () => {
    const { cert, key } = await writePair('good');
    const lines: string[] = [];
    const log = createLogger('info', new Writable({ write: (chunk: Buffer, _e, done) => (lines.push(chunk.toString()), done()) }));
    const material = await loadTlsMaterial(configWith(['--cert', cert, '--key', key]), log);
    assert.ok(material.secureContext);
    const loaded = lines.map((line) => JSON.parse(line) as Record<string, unknown>).find((line) => line['msg'] === 'TLS certificate loaded');
    assert.match(String(loaded?.['fingerprint256']), /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  });

  it('refuses a key that does not belong to the certificate', async () => {
    const a = await writePair('a');
    const b = await writePair('b');
    await assert.rejects(loadTlsMaterial(configWith(['--cert', a.cert, '--key', b.key]), quietLog), (error: unknown) => {
      assert.ok(error instanceof TlsMaterialError);
      assert.match(error.message, /does not belong to cert/);
      return true;
    });
  });

  it('explains an encrypted key and a file that is not a certificate', async () => {
    const pair = await generateSelfSigned(['pop.example.net']);
    const encrypted = createPrivateKey(pair.keyPem).export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'x' }).toString();
    const { cert, key } = await writePair('encrypted', { certPem: pair.certPem, keyPem: encrypted });
    await assert.rejects(loadTlsMaterial(configWith(['--cert', cert, '--key', key]), quietLog), /is encrypted; popwarden needs an unencrypted key/);
    const junk = await writePair('junk', { certPem: 'hello', keyPem: pair.keyPem });
    await assert.rejects(loadTlsMaterial(configWith(['--cert', junk.cert, '--key', junk.key]), quietLog), /is not a PEM certificate/);
  });
});
