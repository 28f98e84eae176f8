/**
 * The client's address toward the backend (issue 13.7), proven by a real Dovecot's own log: a
 * PROXY header (v1, v2) on every backend connection with backend_proxy_protocol, to a Dovecot
 * listener with `haproxy = yes`; and XCLIENT with backend_xclient: auto, to a Dovecot that offers
 * it (`[XCLIENT]` in its greeting) to popwarden's address in login_trusted_networks. Clients bind
 * loopback aliases so their address differs from popwarden's (127.0.0.1).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';
import { startHaproxy, type Haproxy } from '../harness/haproxy.js';
import { startProtected, type Protected } from '../harness/redis.js';
import { RawClient } from '../harness/raw-client.js';
import { fetchWithCurl } from '../harness/clients.js';
import { probeBackend } from '../../src/backend/probe.js';
import { testConfig } from '../harness/popwarden.js';
import type { BackendConfig } from '../../src/config/types.js';

/** alice logs in over STLS to popwarden's STLS port from `source`; the reply to PASS. */
async function loginFrom(running: Protected, source: string): Promise<string> {
  const client = await RawClient.plain(running.proxy.host, running.proxy.stlsPort, source);
  try {
    await client.readLine();
    assert.equal(await client.command('STLS'), '+OK Begin TLS negotiation');
    await client.upgrade(running.proxy.caFile);
    await client.command('USER alice');
    return await client.command('PASS s3cret!pw', 30_000);
  } finally {
    client.destroy();
  }
}

/** The `rip=` of Dovecot's login line for alice whose session came after `from` log octets. */
async function dovecotClientAddress(dovecot: Dovecot, from: number): Promise<string | undefined> {
  return dovecot.whenLogged(() => /pop3-login: Info: Login: user=<alice>, [^\n]*?rip=([^,\s]+)/.exec(readFileSync(dovecot.logFile, 'latin1').slice(from))?.[1], 10_000);
}

const logSize = (dovecot: Dovecot): number => readFileSync(dovecot.logFile).length;

/** popwarden in front of `dovecot` for the length of `body`. */
async function withPopwarden(dovecot: Dovecot, options: Parameters<typeof startProtected>[1], body: (running: Protected) => Promise<unknown>): Promise<void> {
  const running = await startProtected(dovecot, options);
  try {
    await body(running);
  } finally {
    await running.stop();
  }
}

/** alice logs in from `source`; Dovecot's log names `expected` as the client. */
async function dovecotSees(dovecot: Dovecot, running: Protected, source: string, expected: string): Promise<string> {
  const from = logSize(dovecot);
  assert.equal(await loginFrom(running, source), '+OK Logged in');
  assert.equal(await dovecotClientAddress(dovecot, from), expected);
  return readFileSync(dovecot.logFile, 'latin1').slice(from);
}

describe('PROXY protocol to a Dovecot listener with haproxy = yes (issue 13.7)', { timeout: 240_000 }, () => {
  let dovecot: Dovecot;
  before(async () => {
    dovecot = await startDovecot({ profile: 'all', authPenalty: false, authFailureDelay: '0', haproxy: true });
  });
  after(async () => {
    await dovecot?.stop();
  });

  for (const version of ['v1', 'v2'] as const) {
    test(`backend_proxy_protocol: ${version}: Dovecot logs the client's address`, async () => {
      await withPopwarden(dovecot, { backendOptions: { proxyProtocol: version } }, (running) => dovecotSees(dovecot, running, '127.0.0.5', '127.0.0.5'));
    });
  }

  test('without the header Dovecot refuses the connection: the option is what makes the difference', async () => {
    await withPopwarden(dovecot, {}, async (running) => assert.match(await loginFrom(running, '127.0.0.5'), /^-ERR \[SYS\/TEMP\]/));
  });

  test('the health probe sends LOCAL (v2) or UNKNOWN (v1) and finds the backend up; without a header it is down', async () => {
    const base = testConfig({ backend: { host: dovecot.host, port: dovecot.port, tls: 'off' } }).backends[0]!;
    const probe = (backend: BackendConfig) => probeBackend(backend, 5_000);
    assert.equal((await probe({ ...base, proxyProtocol: 'v2' })).up, true);
    assert.equal((await probe({ ...base, proxyProtocol: 'v1' })).up, true);
    assert.equal((await probe({ ...base, proxyProtocol: 'off' })).up, false);
  });

  test('the whole chain: a client behind HAProxy (send-proxy-v2) is the client in Dovecot\'s log behind popwarden (v1)', async () => {
    const running = await startProtected(dovecot, {
      backendOptions: { proxyProtocol: 'v1' },
      listeners: [
        { kind: 'tls', host: '127.0.0.1', port: 0, name: 'tls:lb', proxyProtocol: { trusted: ['127.0.0.1/32'] } },
        { kind: 'stls', host: '127.0.0.1', port: 0, name: 'stls:test' },
      ],
    });
    let haproxy: Haproxy | undefined;
    try {
      haproxy = await startHaproxy([{ to: { host: '127.0.0.1', port: running.proxy.tlsPort }, header: 'v2' }]);
      const from = logSize(dovecot);
      const result = await fetchWithCurl({ host: haproxy.host, port: haproxy.ports[0] ?? 0, mode: 'implicit', user: 'alice', pass: 's3cret!pw', caFile: running.proxy.caFile, interface: '127.0.0.7', messages: [1] });
      assert.ok(result.ok, result.stderr);
      assert.equal(await dovecotClientAddress(dovecot, from), '127.0.0.7');
    } finally {
      await haproxy?.stop();
      await running.stop();
    }
  });
});

describe('XCLIENT to a Dovecot that trusts popwarden (issue 13.7)', { timeout: 240_000 }, () => {
  let dovecot: Dovecot;
  before(async () => {
    // STLS on the backend link: XCLIENT goes inside TLS, after the CAPA there.
    dovecot = await startDovecot({ profile: 'stls', authPenalty: false, authFailureDelay: '0', loginTrustedNetworks: '127.0.0.1/32' });
  });
  after(async () => {
    await dovecot?.stop();
  });

  const backendOptions = (xclient: 'auto' | 'off'): Partial<BackendConfig> => ({ xclient, tls: 'starttls', caFile: dovecot.caFile });

  test('backend_xclient: auto: Dovecot logs the client address and the TLS link', async () => {
    await withPopwarden(dovecot, { backendOptions: backendOptions('auto') }, async (running) => {
      assert.match(await dovecotSees(dovecot, running, '127.0.0.6', '127.0.0.6'), /Login: user=<alice>, [^\n]*rip=127\.0\.0\.6[^\n]*, TLS,/);
    });
  });

  test('APOP after XCLIENT: the greeting\'s timestamp still signs the login', async () => {
    await withPopwarden(dovecot, { backendOptions: { ...backendOptions('auto'), auth: 'apop' } }, async (running) => {
      assert.match(await dovecotSees(dovecot, running, '127.0.0.8', '127.0.0.8'), /Login: user=<alice>, method=APOP/);
    });
  });

  test('backend_xclient: off: Dovecot sees popwarden', async () => {
    await withPopwarden(dovecot, { backendOptions: backendOptions('off') }, (running) => dovecotSees(dovecot, running, '127.0.0.6', '127.0.0.1'));
  });
});
