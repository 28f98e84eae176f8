/** limits.max_handshakes_per_ip: handshakes in progress per address, implicit TLS and STLS together. */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect as netConnect, type Socket } from 'node:net';
import { legacyScript, startFakeBackend, type FakeBackend } from '../harness/fake-backend.js';
import { servedFingerprint, startTestProxy, testCertificate, type TestProxy } from '../harness/popwarden.js';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';

const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 150));

/** A TCP connection that starts a ClientHello record and then stalls. */
async function stalledHandshake(port: number, localAddress = '127.0.0.1'): Promise<Socket> {
  const socket = netConnect({ host: '127.0.0.1', port, localAddress });
  socket.on('error', () => undefined);
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.write(Buffer.from([0x16, 0x03, 0x01]));
  return socket;
}

/** Resolves 'closed' or 'open' after `ms`, and whether the server sent any byte. */
function fate(socket: Socket, ms: number): Promise<{ closed: boolean; bytes: number }> {
  let bytes = 0;
  socket.on('data', (chunk: Buffer) => (bytes += chunk.length));
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ closed: false, bytes }), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve({ closed: true, bytes });
    });
  });
}

describe('at most limits.max_handshakes_per_ip TLS handshakes in progress per address', { timeout: 60_000 }, () => {
  let backend: FakeBackend;
  let proxy: TestProxy;
  const stalled: Socket[] = [];
  const fingerprint = new X509Certificate(readFileSync(testCertificate().certFile)).fingerprint256;

  before(async () => {
    backend = await startFakeBackend(legacyScript());
    proxy = await startTestProxy({ backend: { host: backend.host, port: backend.port }, limits: { maxHandshakesPerIp: 3, maxSessionsPerIp: 0, maxNewConnectionsPerIp: 0 } });
  });
  after(async () => {
    for (const socket of stalled) socket.destroy();
    await proxy?.stop();
    await backend?.stop();
  });

  it('closes the connection over the bound at once, without TLS bytes, and counts STLS too', async () => {
    stalled.push(...(await Promise.all([1, 2, 3].map(() => stalledHandshake(proxy.tlsPort)))));
    const fourth = await stalledHandshake(proxy.tlsPort);
    const result = await fate(fourth, 1_000);
    assert.deepEqual(result, { closed: true, bytes: 0 });
    // STLS from the same address shares the bound: the upgrade is refused after +OK.
    await assert.rejects(servedFingerprint(proxy.stlsPort, { stls: true }));
    // Another address is not affected.
    const other = await stalledHandshake(proxy.tlsPort, '127.0.0.2');
    assert.equal((await fate(other, 300)).closed, false);
    other.destroy();
    // The stalled ones are still waiting for their handshake timeout, not closed by the bound.
    for (const socket of stalled) assert.equal(socket.destroyed, false);
  });

  it('frees a slot when a stalled handshake goes away', async () => {
    stalled.pop()?.destroy();
    await settle();
    assert.equal(await servedFingerprint(proxy.tlsPort), fingerprint);
    // Completed handshakes do not hold a slot (the probe hangs up right after its handshake; let the server see it).
    await settle();
    assert.equal(await servedFingerprint(proxy.tlsPort), fingerprint);
    await settle();
    assert.equal(await servedFingerprint(proxy.stlsPort, { stls: true }), fingerprint);
    for (const socket of stalled.splice(0)) socket.destroy();
    await settle();
    const results = await Promise.all([1, 2, 3].map(() => servedFingerprint(proxy.stlsPort, { stls: true })));
    assert.deepEqual(results, [fingerprint, fingerprint, fingerprint]);
  });
});
