/**
 * The admin endpoints and the backend probe: /metrics, /healthz, /readyz (with the JSON body that
 * names the failing part), the probe that never logs in, and metrics_listen off.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Writable } from 'node:stream';
import { startFakeBackend, type FakeBackend, type FakeScript } from '../harness/fake-backend.js';
import { testConfig } from '../harness/popwarden.js';
import { createLogger } from '../../src/observability/log.js';
import { probeBackend } from '../../src/backend/probe.js';
import { startObservability, type Observability } from '../../src/wiring/observability.js';
import type { RunningProxy } from '../../src/proxy.js';
import type { BackendConfig, Config } from '../../src/config/types.js';

const log = createLogger('silent', new Writable({ write: (_c, _e, cb) => cb() }));

/** A port nothing listens on (bound, then released). */
async function deadPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function get(obs: Observability, path: string, method = 'GET'): Promise<{ status: number; type: string; body: string }> {
  const { host, port } = obs.address!;
  const res = await fetch(`http://${host}:${port}${path}`, { method, signal: AbortSignal.timeout(5_000) });
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: await res.text() };
}

const fakeProxy: RunningProxy = {
  listeners: [
    { config: { kind: 'tls', host: '127.0.0.1', port: 0, name: 'tls:test' }, address: { address: '127.0.0.1', family: 'IPv4', port: 1 } },
  ],
  close: () => Promise.resolve(),
};

function configFor(backendPort: number, extra: Partial<Config['metrics']> = {}): Config {
  const base = testConfig({ backend: { host: '127.0.0.1', port: backendPort }, timeouts: { backendConnectMs: 500 } });
  const metrics = { listen: { host: '127.0.0.1', port: 0 }, backendProbeIntervalMs: 0, ...extra };
  return { ...base, metrics, backends: base.backends.map((b) => ({ ...b, probeIntervalMs: metrics.backendProbeIntervalMs })) };
}

/** What the probe talks to: a greeting, CAPA without STLS, and QUIT. */
const greeterScript: FakeScript = async (conn) => {
  await conn.write('+OK ready\r\n');
  for (;;) {
    const line = await conn.readLine(5_000).catch(() => '');
    if (line === 'CAPA') await conn.write('+OK\r\nUSER\r\n.\r\n');
    else break;
  }
  await conn.write('+OK bye\r\n');
  conn.end();
};

describe('backend probe', () => {
  let greeter: FakeBackend;
  let silent: FakeBackend;
  let liar: FakeBackend;
  before(async () => {
    greeter = await startFakeBackend(greeterScript);
    silent = await startFakeBackend(() => undefined);
    liar = await startFakeBackend(async (conn) => {
      await conn.write('-ERR go away\r\n');
      conn.end();
    });
  });
  after(async () => {
    await greeter.stop();
    await silent.stop();
    await liar.stop();
  });

  test('up: connects, reads +OK, asks CAPA (is STLS offered?) and QUITs, never credentials', async () => {
    const result = await probeBackend(testConfig({ backend: { host: greeter.host, port: greeter.port } }).backends[0]!, 1_000);
    assert.equal(result.up, true);
    const conn = greeter.connections().at(-1)!;
    await conn.whenClosed;
    assert.equal(conn.received().toString('latin1'), 'CAPA\r\nQUIT\r\n');
  });

  test('down: refused, silent past the timeout, or not +OK', async () => {
    const backendAt = (port: number): BackendConfig => testConfig({ backend: { host: '127.0.0.1', port } }).backends[0]!;
    const refused = await probeBackend(backendAt(await deadPort()), 1_000);
    assert.deepEqual({ up: refused.up, reason: 'reason' in refused ? refused.reason : '' }, { up: false, reason: 'connect-failed' });
    const started = Date.now();
    const timedOut = await probeBackend(backendAt(silent.port), 300);
    assert.ok(Date.now() - started < 2_000);
    assert.deepEqual({ up: timedOut.up, reason: 'reason' in timedOut ? timedOut.reason : '' }, { up: false, reason: 'timeout' });
    const bad = await probeBackend(backendAt(liar.port), 1_000);
    assert.deepEqual({ up: bad.up, reason: 'reason' in bad ? bad.reason : '' }, { up: false, reason: 'bad-greeting' });
  });
});

describe('admin endpoints', () => {
  let backend: FakeBackend;
  let obs: Observability;
  before(async () => {
    backend = await startFakeBackend(greeterScript);
    obs = await startObservability(configFor(backend.port), log, { version: '1.2.3' });
  });
  after(async () => {
    await obs.close();
    await backend.stop();
  });

  test('/healthz answers at once; /readyz is 503 until the listeners are bound, naming that part', async () => {
    const health = await get(obs, '/healthz');
    assert.equal(health.status, 200);
    assert.deepEqual(JSON.parse(health.body), { status: 'alive' });
    const notReady = await get(obs, '/readyz');
    assert.equal(notReady.status, 503);
    assert.match(notReady.type, /^application\/json/);
    const body = JSON.parse(notReady.body) as { status: string; checks: Record<string, { ok: boolean; detail: string }> };
    assert.equal(body.status, 'not ready');
    assert.deepEqual(body.checks['listeners'], { ok: false, detail: 'not bound yet' });
    assert.equal(body.checks['backend']?.ok, true);
  });

  test('/readyz is 200 once watched, with every check in the body', async () => {
    obs.watch(fakeProxy, {
      secureContext: undefined as never,
      serverOptions: {},
      certificates: [{ name: 'localhost', notAfter: new Date('2031-05-06T00:00:00Z') }],
    });
    const ready = await get(obs, '/readyz');
    assert.equal(ready.status, 200, ready.body);
    assert.deepEqual(JSON.parse(ready.body), {
      status: 'ready',
      checks: {
        listeners: { ok: true, detail: '1 bound' },
        backend: { ok: true, detail: 'greeting received', backends: { default: { ok: true, detail: 'greeting received' } } },
        rate_limit_store: { ok: true, detail: 'not configured' },
      },
    });
  });

  test('/readyz is 503 with the store down, and ready again when it is back', async () => {
    obs.metrics.rateLimitStoreUp(false);
    const down = await get(obs, '/readyz');
    assert.equal(down.status, 503);
    assert.deepEqual((JSON.parse(down.body) as { checks: Record<string, unknown> }).checks['rate_limit_store'], { ok: false, detail: 'down' });
    obs.metrics.rateLimitStoreUp(true);
    assert.equal((await get(obs, '/readyz')).status, 200);
  });

  test('/metrics serves the exposition format with build info and the certificate', async () => {
    obs.metrics.commandRelayed('RETR', 0.1);
    const res = await get(obs, '/metrics');
    assert.equal(res.status, 200);
    assert.match(res.type, /^text\/plain; version=0\.0\.4/);
    assert.match(res.body, /^popwarden_build_info\{version="1\.2\.3",node_version="v[\d.]+"\} 1$/m);
    assert.match(res.body, /^popwarden_commands_total\{verb="RETR"\} 1$/m);
    assert.match(res.body, /^popwarden_tls_certificate_not_after_timestamp_seconds\{listener="tls:test",name="localhost"\} 1935792000$/m);
    assert.match(res.body, /^process_resident_memory_bytes /m);
    assert.equal((await get(obs, '/metrics?x=1', 'HEAD')).body, '');
  });

  test('unknown paths are 404 and other methods 405', async () => {
    assert.equal((await get(obs, '/')).status, 404);
    assert.equal((await get(obs, '/metrics', 'POST')).status, 405);
  });

  test('a taken metrics port fails startup with one clear message', async () => {
    const { port } = obs.address!;
    await assert.rejects(
      startObservability({ ...configFor(backend.port), metrics: { listen: { host: '127.0.0.1', port }, backendProbeIntervalMs: 0 } }, log),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, 'EADDRINUSE');
        assert.equal(error.message, `metrics_listen 127.0.0.1:${port}: address already in use; change metrics_listen, or set it to off`);
        return true;
      },
    );
  });
});

describe('readiness with the backend down and a periodic probe', () => {
  test('backend_up goes to 0 and /readyz names the backend', { timeout: 10_000 }, async () => {
    const obs = await startObservability(configFor(await deadPort(), { backendProbeIntervalMs: 100 }), log);
    try {
      obs.watch(fakeProxy);
      const deadline = Date.now() + 5_000;
      let metrics = '';
      while (Date.now() < deadline && !/^popwarden_backend_up\{[^}]*\} 0$/m.test(metrics)) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        metrics = (await get(obs, '/metrics')).body;
      }
      assert.match(metrics, /^popwarden_backend_up\{backend="default"\} 0$/m);
      assert.match(metrics, /^popwarden_backend_probes_total\{backend="default",result="failure"\} [1-9]/m);
      const res = await get(obs, '/readyz');
      assert.equal(res.status, 503);
      assert.deepEqual((JSON.parse(res.body) as { checks: Record<string, unknown> }).checks['backend'], {
        ok: false,
        detail: 'last probe failed: connect-failed',
        backends: { default: { ok: false, detail: 'last probe failed: connect-failed' } },
      });
    } finally {
      await obs.close();
    }
  });

  test('several backends: ready while one that is not drained is up, each listed; backend_up by name; reload follows', { timeout: 10_000 }, async () => {
    const greeter = await startFakeBackend(greeterScript);
    const base = configFor(greeter.port);
    const north = { ...base.backends[0]!, name: 'north' };
    const south = { ...base.backends[0]!, name: 'south', address: { kind: 'tcp' as const, host: '127.0.0.1', port: await deadPort() } };
    const obs = await startObservability({ ...base, backends: [north, south] }, log);
    try {
      obs.watch(fakeProxy);
      const readyz = async () => {
        const res = await get(obs, '/readyz');
        return { status: res.status, backend: (JSON.parse(res.body) as { checks: Record<string, unknown> }).checks['backend'] };
      };
      assert.deepEqual(await readyz(), {
        status: 200,
        backend: {
          ok: true,
          detail: '1 of 2 backends taking sessions are up',
          backends: { north: { ok: true, detail: 'greeting received' }, south: { ok: false, detail: 'connect-failed' } },
        },
      });
      const metrics = (await get(obs, '/metrics')).body;
      assert.match(metrics, /^popwarden_backend_up\{backend="north"\} 1$/m);
      assert.match(metrics, /^popwarden_backend_up\{backend="south"\} 0$/m);
      // north drained by reload: no backend takes new sessions any more.
      obs.backendsChanged([{ ...north, drain: true }, south]);
      const drained = await readyz();
      assert.equal(drained.status, 503);
      assert.equal((drained.backend as { detail: string }).detail, '0 of 1 backends taking sessions are up');
      // south removed: its series goes.
      obs.backendsChanged([north]);
      assert.doesNotMatch((await get(obs, '/metrics')).body, /backend="south"/);
    } finally {
      await obs.close();
      await greeter.stop();
    }
  });

  test('metrics_listen off: events are dropped and nothing listens', async () => {
    const obs = await startObservability({ ...configFor(1), metrics: { listen: undefined, backendProbeIntervalMs: 1_000 } }, log);
    assert.equal(obs.address, undefined);
    obs.metrics.commandRelayed('RETR', 1);
    await obs.close();
  });
});
