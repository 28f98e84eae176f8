/**
 * PROXY protocol in (issue 13.6): popwarden behind a real HAProxy in TCP mode, `send-proxy-v2` to
 * the implicit-TLS listener and `send-proxy` (v1) to the STLS one, with a real Dovecot behind it.
 * Clients bind loopback aliases (127.0.0.5, ...) so their address differs from HAProxy's
 * (127.0.0.1): the audit lines, the failed-login limit and the per-address connection bound must
 * all see the client's. Connections that are not a trusted proxy's with a good header are closed
 * before any TLS or POP3 work, each with its reason counted.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { readFileSync } from 'node:fs';
import { EventEmitter, once } from 'node:events';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';
import { startHaproxy, type Haproxy } from '../harness/haproxy.js';
import { startProtected, type Protected } from '../harness/redis.js';
import { RawClient } from '../harness/raw-client.js';
import { fetchWithCurl } from '../harness/clients.js';
import { NO_METRICS, type Metrics } from '../../src/observability/metrics.js';
import type { ListenerConfig } from '../../src/config/types.js';
import { encodeProxyHeader } from '../../src/net/proxy-protocol.js';
import { startTestProxy, type TestProxy } from '../harness/popwarden.js';

const AUTH_FAILED = '-ERR [AUTH] Authentication failed';
const BLOCKED = '-ERR [SYS/TEMP] Too many failed logins, try again later';
const TOO_MANY_CONNECTIONS = '-ERR [SYS/TEMP] Too many connections from your address, try again later';
const BEHIND_HAPROXY = { trusted: ['127.0.0.1/32'] };
const LISTENERS: ListenerConfig[] = [
  { kind: 'tls', host: '127.0.0.1', port: 0, name: 'tls:lb', proxyProtocol: BEHIND_HAPROXY },
  { kind: 'stls', host: '127.0.0.1', port: 0, name: 'stls:lb', proxyProtocol: BEHIND_HAPROXY },
];

describe('PROXY protocol in, behind HAProxy (issue 13.6)', { timeout: 240_000 }, () => {
  let dovecot: Dovecot;
  let running: Protected;
  let haproxy: Haproxy;
  /** "LISTENER REASON" of every connectionRefused, and the listener of every TLS handshake. */
  const refusals: string[] = [];
  const handshakes: string[] = [];
  const metrics: Metrics = {
    ...NO_METRICS,
    connectionRefused: (listener, reason) => void refusals.push(`${listener} ${reason}`),
    tlsHandshake: (listener) => void handshakes.push(listener),
  };
  let tlsFront: number;
  let stlsFront: number;

  before(async () => {
    dovecot = await startDovecot({ profile: 'all', authPenalty: false, authFailureDelay: '0' });
    running = await startProtected(dovecot, { listeners: LISTENERS, metrics, limits: { maxSessionsPerIp: 2 } });
    haproxy = await startHaproxy([
      { to: { host: '127.0.0.1', port: running.proxy.tlsPort }, header: 'v2' },
      { to: { host: '127.0.0.1', port: running.proxy.stlsPort }, header: 'v1' },
    ]);
    [tlsFront = 0, stlsFront = 0] = haproxy.ports;
  });
  after(async () => {
    await haproxy?.stop();
    await running?.stop();
    await dovecot?.stop();
  });

  /** The audit line of the first login of `user` from `source`, once written. */
  const auditFrom = (source: string, result: string): Promise<Record<string, unknown>> =>
    running.proxy.waitForLog((l) => l['event'] === 'login' && l['result'] === result && String(l['peer']).startsWith(`${source}:`));

  /** A login over STLS through HAProxy's v1 frontend, from `source`: the reply to PASS. */
  async function loginVia(source: string, user: string, password: string): Promise<string> {
    const client = await RawClient.plain(haproxy.host, stlsFront, source);
    try {
      assert.match(await client.readLine(), /^\+OK /);
      assert.equal(await client.command('STLS'), '+OK Begin TLS negotiation');
      await client.upgrade(running.proxy.caFile);
      await client.command(`USER ${user}`);
      return await client.command(`PASS ${password}`);
    } finally {
      client.destroy();
    }
  }

  test('curl through send-proxy-v2 to the implicit-TLS port: the audit line names the client, and HAProxy as the way it came', async () => {
    const result = await fetchWithCurl({ host: haproxy.host, port: tlsFront, mode: 'implicit', user: 'alice', pass: 's3cret!pw', caFile: running.proxy.caFile, interface: '127.0.0.5' });
    assert.ok(result.ok, result.stderr);
    assert.equal(result.messages.length, 3);
    const audit = await auditFrom('127.0.0.5', 'success');
    assert.match(String(audit['via']), /^127\.0\.0\.1:\d+$/, 'HAProxy is named as the hop');
    assert.equal(audit['listener'], 'tls:lb');
  });

  test('curl through send-proxy (v1) to the STLS port: the same', async () => {
    const result = await fetchWithCurl({ host: haproxy.host, port: stlsFront, mode: 'stls', user: 'bob', pass: 'bobpass', caFile: running.proxy.caFile, interface: '127.0.0.6' });
    assert.ok(result.ok, result.stderr);
    assert.equal(result.messages.length, 1);
    const audit = await auditFrom('127.0.0.6', 'success');
    assert.equal(audit['listener'], 'stls:lb');
    assert.match(String(audit['via']), /^127\.0\.0\.1:\d+$/);
  });

  test('the failed-login limit counts the carried address: 127.0.0.7 is blocked after 10 failures, 127.0.0.8 behind the same HAProxy is not', async () => {
    for (let i = 0; i < 10; i++) assert.equal(await loginVia('127.0.0.7', 'bob', `guess-${i}`), AUTH_FAILED);
    assert.equal(await loginVia('127.0.0.7', 'bob', 'bobpass'), BLOCKED, 'the 11th attempt from 127.0.0.7 is blocked, right password or not');
    assert.equal(await loginVia('127.0.0.8', 'bob', 'guess-x'), AUTH_FAILED, 'another client behind the same HAProxy is judged on its own');
    assert.equal(await loginVia('127.0.0.8', 'bob', 'bobpass'), '+OK Logged in');
    const blocked = await auditFrom('127.0.0.7', 'blocked');
    assert.equal(blocked['limiter'], 'user_ip');
  });

  test('the per-address session bound counts the carried address', async () => {
    const held = [await RawClient.plain(haproxy.host, stlsFront, '127.0.0.9'), await RawClient.plain(haproxy.host, stlsFront, '127.0.0.9')];
    try {
      for (const client of held) assert.match(await client.readLine(), /^\+OK /);
      const third = await RawClient.plain(haproxy.host, stlsFront, '127.0.0.9');
      assert.equal(await third.readLine(), TOO_MANY_CONNECTIONS);
      third.destroy();
      const other = await RawClient.plain(haproxy.host, stlsFront, '127.0.0.10');
      assert.match(await other.readLine(), /^\+OK /, 'another address behind the same HAProxy still gets in');
      other.destroy();
      assert.ok(refusals.includes('stls:lb too_many_sessions'));
    } finally {
      for (const client of held) client.destroy();
    }
  });

  /** Connects straight to popwarden's listener from `source`, sends `bytes`, and waits for the close. */
  async function refusedDirect(port: number, source: string, bytes: Buffer | string | undefined, reason: string): Promise<void> {
    const before = refusals.length;
    const client = await RawClient.plain('127.0.0.1', port, source);
    if (bytes !== undefined) client.write(bytes);
    await client.whenClosed;
    assert.equal(client.all().length, 0, 'not a byte back: no greeting, no TLS');
    const listener = port === running.proxy.tlsPort ? 'tls:lb' : 'stls:lb';
    assert.deepEqual(refusals.slice(before), [`${listener} ${reason}`]);
    await running.proxy.waitForLog((l) => l['msg'] === 'connection refused' && l['reason'] === reason && l['listener'] === listener);
  }

  test('closed before any TLS or POP3 work: an untrusted source, no header, a malformed header, a header that never completes', async () => {
    const handshakesBefore = handshakes.length;
    const header = encodeProxyHeader('v2', { address: '192.0.2.1', port: 1 }, { address: '127.0.0.1', port: 995 });
    await refusedDirect(running.proxy.tlsPort, '127.0.0.2', header, 'proxy_untrusted');
    await refusedDirect(running.proxy.stlsPort, '127.0.0.2', 'PROXY TCP4 192.0.2.1 127.0.0.1 1 110\r\n', 'proxy_untrusted');
    // A TLS ClientHello straight from the trusted address: HAProxy would have put a header first.
    await refusedDirect(running.proxy.tlsPort, '127.0.0.1', Buffer.from('16030100a5010000a10303', 'hex'), 'proxy_missing');
    await refusedDirect(running.proxy.stlsPort, '127.0.0.1', 'USER alice\r\n', 'proxy_missing');
    await refusedDirect(running.proxy.stlsPort, '127.0.0.1', 'PROXY TCP4 192.0.2.1 127.0.0.1 01 110\r\n', 'proxy_malformed');
    await refusedDirect(running.proxy.tlsPort, '127.0.0.1', header.subarray(0, 20), 'proxy_timeout');
    assert.equal(handshakes.length, handshakesBefore, 'no TLS handshake was started for any of them');
    const untrusted = running.proxy.logs().find((l) => l['reason'] === 'proxy_untrusted' && l['listener'] === 'tls:lb');
    assert.equal(untrusted?.['peer'], '127.0.0.2');
  });

  test('a v2 header and the ClientHello in one segment: the TLS layer gets every byte after the header', async () => {
    const raw = netConnect({ host: '127.0.0.1', port: running.proxy.tlsPort });
    await new Promise((resolve) => raw.once('connect', resolve));
    raw.cork();
    raw.write(encodeProxyHeader('v2', { address: '203.0.113.9', port: 4242 }, { address: '198.51.100.1', port: 995 }));
    const secured = tlsConnect({ socket: raw, ca: readFileSync(running.proxy.caFile), servername: 'localhost' });
    process.nextTick(() => raw.uncork());
    try {
      const greeting = await new Promise<string>((resolve, reject) => {
        secured.once('data', (chunk: Buffer) => resolve(chunk.toString('latin1')));
        secured.once('error', reject);
      });
      assert.match(greeting, /^\+OK /);
      await running.proxy.waitForLog((l) => l['msg'] === 'session opened' && l['peer'] === '203.0.113.9:4242');
    } finally {
      secured.destroy();
    }
  });
});

describe('the TLS handshake bound counts the carried address (issue 13.6)', { timeout: 60_000 }, () => {
  let dovecot: Dovecot;
  let running: Protected;
  const refusals: string[] = [];
  /** Told of every admitted connection (its handshake then in progress). */
  const opened = new EventEmitter();
  before(async () => {
    dovecot = await startDovecot({ profile: 'all', authPenalty: false });
    const metrics: Metrics = {
      ...NO_METRICS,
      connectionRefused: (listener, reason) => void refusals.push(`${listener} ${reason}`),
      connectionOpened: () => void opened.emit('opened'),
    };
    running = await startProtected(dovecot, { listeners: LISTENERS, metrics, limits: { maxHandshakesPerIp: 1 } });
  });
  after(async () => {
    await running?.stop();
    await dovecot?.stop();
  });

  /** A connection from the trusted proxy that names `client`, and nothing after the header. */
  async function headerOnly(client: string): Promise<RawClient> {
    const connection = await RawClient.plain('127.0.0.1', running.proxy.tlsPort);
    connection.write(encodeProxyHeader('v2', { address: client, port: 1000 }, { address: '127.0.0.1', port: 995 }));
    return connection;
  }

  test('a second handshake for 198.51.100.1 is refused while one is in progress; 198.51.100.2 through the same proxy shakes hands', async () => {
    const admitted = once(opened, 'opened');
    const first = await headerOnly('198.51.100.1');
    await admitted;
    const second = await headerOnly('198.51.100.1');
    await second.whenClosed;
    assert.deepEqual(refusals, ['tls:lb too_many_handshakes']);
    const log = await running.proxy.waitForLog((l) => l['reason'] === 'too_many_handshakes');
    assert.equal(log['peer'], '198.51.100.1');

    const raw = netConnect({ host: '127.0.0.1', port: running.proxy.tlsPort });
    await new Promise((resolve) => raw.once('connect', resolve));
    raw.write(encodeProxyHeader('v2', { address: '198.51.100.2', port: 1000 }, { address: '127.0.0.1', port: 995 }));
    const secured = tlsConnect({ socket: raw, ca: readFileSync(running.proxy.caFile), servername: 'localhost' });
    await new Promise((resolve, reject) => secured.once('secureConnect', resolve).once('error', reject));
    secured.destroy();
    first.destroy();
  });
});

describe('connections waiting for their PROXY header are bounded, the whole process (limits.max_handshakes)', { timeout: 60_000 }, () => {
  const refusals: string[] = [];
  const metrics: Metrics = { ...NO_METRICS, connectionRefused: (listener, reason) => void refusals.push(`${listener} ${reason}`) };
  let running: TestProxy;
  before(async () => {
    // A long header deadline: the held connections must still be waiting when the next one comes.
    running = await startTestProxy({ listeners: LISTENERS, metrics, limits: { maxHandshakes: 2 }, timeouts: { proxyProtocolMs: 20_000 } });
  });
  after(async () => {
    await running?.stop();
  });

  test('a trusted address that sends nothing holds two places, one on each port; the third is closed at once; a header or a hang-up gives its place back', async () => {
    const header = (port: number): string => `PROXY TCP4 192.0.2.1 127.0.0.1 ${port} 110\r\n`;
    const held = [await RawClient.plain('127.0.0.1', running.stlsPort, '127.0.0.1'), await RawClient.plain('127.0.0.1', running.tlsPort, '127.0.0.1')];
    try {
      const third = await RawClient.plain('127.0.0.1', running.stlsPort, '127.0.0.1');
      await third.whenClosed;
      assert.equal(third.all().length, 0, 'not a byte back');
      assert.deepEqual(refusals, ['stls:lb proxy_pending']);
      await running.waitForLog((l) => l['msg'] === 'connection refused' && l['reason'] === 'proxy_pending');

      // The first one's header arrives: it is a session now, and its place is free.
      held[0]!.write(header(1));
      assert.match(await held[0]!.readLine(), /^\+OK /);
      const fourth = await RawClient.plain('127.0.0.1', running.stlsPort, '127.0.0.1');
      held.push(fourth);
      // The second hangs up: its place is free too, once its close is seen.
      held[1]!.destroy();
      await running.waitForLog((l) => l['msg'] === 'connection refused' && l['reason'] === 'proxy_closed');
      const fifth = await RawClient.plain('127.0.0.1', running.stlsPort, '127.0.0.1');
      held.push(fifth);
      fifth.write(header(5));
      assert.match(await fifth.readLine(), /^\+OK /);
      fourth.write(header(4));
      assert.match(await fourth.readLine(), /^\+OK /);
      assert.deepEqual(refusals, ['stls:lb proxy_pending', 'tls:lb proxy_closed']);
    } finally {
      for (const client of held) client.destroy();
    }
  });
});
