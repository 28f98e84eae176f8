/**
 * limits.max_sessions and limits.max_handshakes: bounds for the whole process, whatever the number
 * of client addresses (issue 9, point 6). Clients come from several loopback addresses
 * (127.0.0.x), each well under every per-address bound.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect as netConnect, type Socket } from 'node:net';
import { legacyScript, startFakeBackend, type FakeBackend } from '../harness/fake-backend.js';
import { servedFingerprint, startTestProxy } from '../harness/popwarden.js';
import { RawClient } from '../harness/raw-client.js';
import { startProtected } from '../harness/redis.js';
import { NO_METRICS, type Metrics } from '../../src/observability/metrics.js';

/** Records connectionRefused events as "LISTENER REASON". */
function refusalRecorder(refusals: string[]): Metrics {
  return { ...NO_METRICS, connectionRefused: (listener, reason) => void refusals.push(`${listener} ${reason}`) };
}

/** A TCP connection that starts a ClientHello record and then stalls. */
async function stalledHandshake(port: number, localAddress: string): Promise<Socket> {
  const socket = netConnect({ host: '127.0.0.1', port, localAddress });
  socket.on('error', () => undefined);
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.write(Buffer.from([0x16, 0x03, 0x01]));
  return socket;
}

describe('process-wide bounds', { timeout: 60_000 }, () => {
  let backend: FakeBackend;
  before(async () => {
    backend = await startFakeBackend(legacyScript());
  });
  after(async () => {
    await backend?.stop();
  });

  it('limits.max_sessions: connections from several addresses are bounded together, with -ERR [SYS/TEMP] on the STLS port and a bare close on the TLS port', async () => {
    const refusals: string[] = [];
    const { proxy, stop } = await startProtected(backend, {
      limits: { maxSessions: 4, maxSessionsPerIp: 20, maxNewConnectionsPerIp: 1_000 },
      metrics: refusalRecorder(refusals),
    });
    const clients: RawClient[] = [];
    try {
      for (const source of ['127.0.0.71', '127.0.0.71', '127.0.0.72', '127.0.0.73']) {
        const client = await RawClient.plain(proxy.host, proxy.stlsPort, source);
        clients.push(client);
        assert.match(await client.readLine(), /^\+OK/, source);
      }
      for (const source of ['127.0.0.74', '127.0.0.75', '127.0.0.71']) {
        const client = await RawClient.plain(proxy.host, proxy.stlsPort, source);
        clients.push(client);
        assert.equal(await client.readLine(), '-ERR [SYS/TEMP] Server busy, try again later', source);
        assert.equal(await client.closedWithin(2_000), true);
      }
      const onTls = await RawClient.plain(proxy.host, proxy.tlsPort, '127.0.0.76');
      clients.push(onTls);
      assert.equal(await onTls.closedWithin(2_000), true);
      assert.equal(onTls.all().length, 0, 'no byte before the ServerHello the client waits for');
      assert.deepEqual(refusals, ['stls:test max_sessions', 'stls:test max_sessions', 'stls:test max_sessions', 'tls:test max_sessions']);
    } finally {
      for (const client of clients) client.destroy();
      await stop();
    }
  });

  it('limits.max_handshakes: handshakes in progress from several addresses are bounded together, on the TLS port and at STLS', async () => {
    const refusals: string[] = [];
    const proxy = await startTestProxy({
      backend: { host: backend.host, port: backend.port },
      limits: { maxHandshakes: 3, maxHandshakesPerIp: 10 },
      metrics: refusalRecorder(refusals),
    });
    const stalled: Socket[] = [];
    try {
      for (const source of ['127.0.0.81', '127.0.0.82', '127.0.0.83']) stalled.push(await stalledHandshake(proxy.tlsPort, source));
      const over = await RawClient.plain(proxy.host, proxy.tlsPort, '127.0.0.84');
      assert.equal(await over.closedWithin(2_000), true);
      assert.equal(over.all().length, 0);
      // STLS shares the bound: +OK, then the upgrade is refused before any TLS work.
      await assert.rejects(servedFingerprint(proxy.stlsPort, { stls: true }));
      assert.deepEqual(refusals, ['tls:test max_handshakes']);
      for (const socket of stalled) assert.equal(socket.destroyed, false, 'the stalled ones wait for their own timeout');
    } finally {
      for (const socket of stalled) socket.destroy();
      await proxy.stop();
    }
  });
});
