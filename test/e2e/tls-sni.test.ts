import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPopwarden, type RunningProxy } from '../../src/proxy.js';
import { loadTlsMaterial } from '../../src/net/tls-material.js';
import { createLogger } from '../../src/observability/log.js';
import { makeNamedCertificate, servedFingerprint, testConfig } from '../harness/popwarden.js';

describe('SNI: certificates chosen by server name on both ports', { timeout: 60_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'popwarden-sni-'));
  const main = makeNamedCertificate(dir, 'default', ['localhost', '127.0.0.1']);
  const mail = makeNamedCertificate(dir, 'mail', ['mail.example.org']);
  const wild = makeNamedCertificate(dir, 'wild', ['*.example.net']);
  let proxy: RunningProxy;
  let tlsPort = 0;
  let stlsPort = 0;

  before(async () => {
    const base = testConfig({ backend: { host: '127.0.0.1', port: 9 } });
    const config = {
      ...base,
      tls: {
        ...base.tls,
        certFile: main.certFile,
        keyFile: main.keyFile,
        certificates: [
          { names: ['mail.example.org', 'pop.example.org'], certFile: mail.certFile, keyFile: mail.keyFile },
          { names: ['*.example.net'], certFile: wild.certFile, keyFile: wild.keyFile },
        ],
      },
    };
    const log = createLogger('silent');
    proxy = await startPopwarden(config, { log, tls: await loadTlsMaterial(config, log) });
    tlsPort = proxy.listeners.find((l) => l.config.kind === 'tls')!.address.port;
    stlsPort = proxy.listeners.find((l) => l.config.kind === 'stls')!.address.port;
  });
  after(async () => {
    await proxy?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const cases: [string | undefined, () => string][] = [
    [undefined, () => main.fingerprint256],
    ['mail.example.org', () => mail.fingerprint256],
    ['POP.Example.org', () => mail.fingerprint256],
    ['a.example.net', () => wild.fingerprint256],
    // RFC 6125: the wildcard is one left-most label, so neither the bare domain nor two labels match.
    ['example.net', () => main.fingerprint256],
    ['a.b.example.net', () => main.fingerprint256],
    ['unknown.example.com', () => main.fingerprint256],
  ];
  for (const stls of [false, true]) {
    for (const [servername, expected] of cases) {
      it(`${stls ? 'STLS' : 'implicit TLS'}: SNI ${servername ?? '(none)'} gets the right certificate`, async () => {
        const port = stls ? stlsPort : tlsPort;
        const options = { stls, ...(servername === undefined ? {} : { servername }) };
        assert.equal(await servedFingerprint(port, options), expected());
      });
    }
  }
});
