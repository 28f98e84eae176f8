import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type ConnectionOptions, type Server, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { createLogger } from '../../src/observability/log.js';
import { loadTlsMaterial } from '../../src/net/tls-material.js';
import { sniLookup } from '../../src/tls/sni.js';
import { TICKET_KEYS_LENGTH, readTicketKeys } from '../../src/tls/ticket-keys.js';
import { tlsPolicy } from '../../src/tls/policy.js';
import { makeNamedCertificate } from '../harness/popwarden.js';

const root = mkdtempSync(join(tmpdir(), 'popwarden-tls-policy-'));
after(() => rmSync(root, { recursive: true, force: true }));
const quiet = createLogger('silent');
const cert = makeNamedCertificate(root, 'server', ['localhost']);
let counter = 0;

function configFrom(yaml: string, extra: string[] = []): Config {
  const file = join(root, `config-${++counter}.yaml`);
  writeFileSync(file, `backend: "127.0.0.1:1110"\ncert: "${cert.certFile}"\nkey: "${cert.keyFile}"\nstate_dir: "${root}"\n${yaml}`);
  const result = loadConfig(['--config', file, ...extra], {});
  assert.ok(result.action === 'run');
  return result.config;
}

async function serve(config: Config): Promise<{ server: Server; port: number }> {
  const material = await loadTlsMaterial(config, quiet);
  // The server stays quiet and lets the client close: TLS 1.3 tickets arrive after the handshake.
  const server = createServer(material.serverOptions, (socket) => socket.on('error', () => undefined));
  server.on('tlsClientError', (_error, socket) => socket.destroy());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

/** Handshakes, waits for a session ticket (TLS 1.3 sends it after the handshake), and reports. */
function handshake(port: number, options: ConnectionOptions = {}): Promise<{ protocol: string | null; cipher: string; reused: boolean; session: Buffer | undefined } | Error> {
  return new Promise((resolve) => {
    let session: Buffer | undefined;
    const socket: TLSSocket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...options }, () => {
      const facts = { protocol: socket.getProtocol(), cipher: socket.getCipher().name, reused: socket.isSessionReused() };
      const early = socket.getSession();
      setTimeout(() => {
        resolve({ ...facts, session: session ?? early });
        socket.destroy();
      }, 100);
    });
    socket.on('session', (ticket: Buffer) => (session = ticket));
    socket.on('error', resolve);
  });
}

describe('TLS policy from the config', { timeout: 30_000 }, () => {
  it('defaults to Mozilla intermediate, TLS 1.2 minimum, no renegotiation', () => {
    const policy = tlsPolicy(configFrom('').tls);
    assert.equal(policy.minVersion, 'TLSv1.2');
    assert.match(String(policy.ciphers), /^ECDHE-ECDSA-AES128-GCM-SHA256:/);
    assert.equal(policy.ecdhCurve, 'X25519:prime256v1:secp384r1');
  });

  it('prefers TLS 1.3 and applies tls.ciphers and tls.groups to TLS 1.2', async () => {
    const { server, port } = await serve(configFrom('tls:\n  ciphers: "ECDHE-RSA-AES256-GCM-SHA384"\n  groups: "secp384r1"\n'));
    try {
      const modern = await handshake(port);
      assert.ok(!(modern instanceof Error), String(modern));
      assert.equal(modern.protocol, 'TLSv1.3');
      const old = await handshake(port, { maxVersion: 'TLSv1.2' });
      assert.ok(!(old instanceof Error), String(old));
      assert.equal(old.cipher, 'ECDHE-RSA-AES256-GCM-SHA384');
      assert.ok((await handshake(port, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-GCM-SHA256' })) instanceof Error);
      assert.ok((await handshake(port, { ecdhCurve: 'X25519' })) instanceof Error, 'a group outside tls.groups was accepted');
    } finally {
      server.close();
    }
  });

  it('refuses TLS 1.0/1.1 by default; min_version TLSv1 needs allow_legacy_protocols', async () => {
    assert.throws(() => configFrom('tls:\n  min_version: TLSv1\n'), /allow_legacy_protocols/);
    const { server, port } = await serve(configFrom(''));
    try {
      assert.ok((await handshake(port, { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' })) instanceof Error);
    } finally {
      server.close();
    }
  });

  it('with the opt-in, a TLS 1.0 client connects (@SECLEVEL=0 and CBC suites added)', async () => {
    const config = configFrom('tls:\n  min_version: TLSv1\n  allow_legacy_protocols: true\n');
    assert.match(String(tlsPolicy(config.tls).ciphers), /ECDHE-RSA-AES128-SHA.*@SECLEVEL=0$/);
    const { server, port } = await serve(config);
    try {
      const result = await handshake(port, { minVersion: 'TLSv1', maxVersion: 'TLSv1', ciphers: 'DEFAULT:@SECLEVEL=0' });
      assert.ok(!(result instanceof Error), String(result));
      assert.equal(result.protocol, 'TLSv1');
    } finally {
      server.close();
    }
  });
});

describe('session ticket keys', { timeout: 30_000 }, () => {
  it('are created 0600 when the file is absent, and read back raw or as base64', async () => {
    const file = join(root, 'ticket.keys');
    const created = await readTicketKeys(file, quiet);
    assert.equal(created.length, TICKET_KEYS_LENGTH);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(await readTicketKeys(file, quiet), created);
    const raw = join(root, 'ticket.raw');
    writeFileSync(raw, created, { mode: 0o600 });
    assert.deepEqual(await readTicketKeys(raw, quiet), created);
    writeFileSync(raw, 'too short', { mode: 0o600 });
    await assert.rejects(readTicketKeys(raw, quiet), /exactly 48 bytes/);
    assert.notDeepEqual(await readTicketKeys(undefined, quiet), await readTicketKeys(undefined, quiet));
    assert.match(readFileSync(file, 'utf8'), /^[A-Za-z0-9+/]+=*\n$/);
  });

  for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
    it(`resume a ${version} session on a second instance that shares the file, not on one that does not`, async () => {
      const shared = join(root, `shared-${version}.keys`);
      const a = await serve(configFrom(`tls:\n  ticket_keys_file: "${shared}"\n`));
      const b = await serve(configFrom(`tls:\n  ticket_keys_file: "${shared}"\n`));
      const c = await serve(configFrom(`tls:\n  ticket_keys_file: "${join(root, `other-${version}.keys`)}"\n`));
      try {
        const firstVisit = await handshake(a.port, { maxVersion: version });
        assert.ok(!(firstVisit instanceof Error), String(firstVisit));
        assert.equal(firstVisit.reused, false);
        assert.ok(firstVisit.session !== undefined, 'no session ticket');
        const onB = await handshake(b.port, { maxVersion: version, session: firstVisit.session });
        assert.ok(!(onB instanceof Error), String(onB));
        assert.equal(onB.reused, true, 'the second instance did not resume the session');
        const onC = await handshake(c.port, { maxVersion: version, session: firstVisit.session });
        assert.ok(!(onC instanceof Error), String(onC));
        assert.equal(onC.reused, false, 'an instance with other keys resumed the session');
      } finally {
        for (const { server } of [a, b, c]) server.close();
      }
    });
  }
});

describe('SNI lookup', () => {
  const names = new Map([
    ['mail.example.org', 'mail'],
    ['*.example.net', 'wild'],
  ]);
  it('matches exact names case-insensitively and wildcards for exactly one left-most label', () => {
    assert.equal(sniLookup(names, 'MAIL.example.org.'), 'mail');
    assert.equal(sniLookup(names, 'pop.example.net'), 'wild');
    assert.equal(sniLookup(names, 'example.net'), undefined);
    assert.equal(sniLookup(names, 'a.b.example.net'), undefined);
    assert.equal(sniLookup(names, 'other.example.org'), undefined);
  });
  it('rejects bad names and wildcards in the config', () => {
    assert.throws(() => configFrom(`tls:\n  certificates:\n    - names: ["*.org"]\n      cert: "${cert.certFile}"\n      key: "${cert.keyFile}"\n`), /wildcard over a single label/);
    assert.throws(() => configFrom(`tls:\n  certificates:\n    - names: ["a.*.org"]\n      cert: "${cert.certFile}"\n      key: "${cert.keyFile}"\n`), /not a host name/);
    const ok = configFrom(`tls:\n  certificates:\n    - names: ["Mail.Example.org", "*.example.net"]\n      cert: "${cert.certFile}"\n      key: "${cert.keyFile}"\n`);
    assert.deepEqual(ok.tls.certificates?.[0]?.names, ['mail.example.org', '*.example.net']);
  });
  it('bounds timeouts.shutdown below systemd TimeoutStopSec', () => {
    assert.equal(configFrom('timeouts:\n  shutdown: 45s\n').timeouts.shutdownMs, 45_000);
    assert.throws(() => configFrom('timeouts:\n  shutdown: 60s\n'));
  });
});
