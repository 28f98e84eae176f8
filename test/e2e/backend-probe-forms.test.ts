/**
 * The backend probe and /readyz for the backends issue 12 adds (12.3): for `exec:` the probe
 * starts the program, reads its greeting and sends QUIT; for `unix:` it connects. Against real
 * popa3d run both ways, plus the failures a probe must name: a missing program, one that exits
 * before its greeting, a socket nobody listens on. No probe leaves a process behind.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { BackendAddress } from '../../src/config/types.js';
import { createLogger } from '../../src/observability/log.js';
import { probeBackend } from '../../src/backend/probe.js';
import { startObservability } from '../../src/wiring/observability.js';
import { startLegacyServer, type LegacyServer } from '../harness/legacy.js';
import { testConfig } from '../harness/popwarden.js';
import { childrenOf } from '../harness/proc.js';
import { startSocketActivated, type SocketActivated } from '../harness/socket-activated.js';

const dir = mkdtempSync(join(tmpdir(), 'popwarden-probe-forms-'));
const silent = createLogger('silent', new Writable({ write: (_c, _e, cb) => cb() }));
const runnerChildren = childrenOf(process.pid).map((p) => p.pid);

const backendAt = (address: BackendAddress) => testConfig({ backend: { address } }).backends[0]!;
const execOf = (program: { command: string; args: readonly string[] }): BackendAddress => ({ kind: 'exec', ...program, environment: {}, cwd: undefined });

/** No child of popwarden (this process) is left but the harness's, and no zombie at all. */
function leftovers(harness: readonly number[]): string[] {
  return childrenOf(process.pid)
    .filter((p) => p.state === 'Z' || ![...runnerChildren, ...harness].includes(p.pid))
    .map((p) => `${p.pid} ${p.comm} ${p.state}`);
}

describe('probe of exec: and unix: backends', { timeout: 120_000 }, () => {
  let server: LegacyServer;
  let activated: SocketActivated;
  let harness: number[];
  before(async () => {
    server = await startLegacyServer({ server: 'popa3d' });
    activated = await startSocketActivated(server.exec);
    harness = childrenOf(process.pid).map((p) => p.pid);
  });
  after(async () => {
    await activated?.stop();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('exec: popa3d is up; the program got QUIT and is gone once the probe has answered', async () => {
    const result = await probeBackend(backendAt(execOf(server.exec)), 10_000);
    assert.equal(result.up, true, JSON.stringify(result));
    assert.deepEqual(leftovers(harness), []);
  });

  test('unix: popa3d socket-activated is up', async () => {
    const result = await probeBackend(backendAt({ kind: 'unix', path: activated.path }), 10_000);
    assert.equal(result.up, true, JSON.stringify(result));
  });

  test('unix: nothing at the path is connect-failed', async () => {
    const result = await probeBackend(backendAt({ kind: 'unix', path: join(dir, 'nobody.sock') }), 2_000);
    assert.deepEqual([result.up, !result.up && result.reason], [false, 'connect-failed']);
  });

  test('exec: a missing program, and one that exits before its greeting, are down with the reason', async () => {
    const missing = await probeBackend(backendAt(execOf({ command: join(dir, 'missing'), args: [] })), 2_000);
    assert.ok(!missing.up);
    assert.equal(missing.reason, 'exec-failed');
    assert.match(missing.fix ?? '', /cannot run .*missing: it \(or its working directory\) does not exist/);

    const early = join(dir, 'early.sh');
    writeFileSync(early, '#!/bin/sh\necho "no config" >&2\nexit 3\n');
    chmodSync(early, 0o755);
    const exited = await probeBackend(backendAt(execOf({ command: early, args: [] })), 5_000);
    assert.ok(!exited.up);
    assert.equal(exited.reason, 'exited-before-greeting');
    assert.match(exited.fix ?? '', /early.sh exited with status 3 before its greeting; stderr: no config/);
    assert.deepEqual(leftovers(harness), []);
  });

  test('/readyz probes the exec: backend: ready with popa3d', async () => {
    const base = testConfig({ backend: { address: execOf(server.exec) }, timeouts: { backendConnectMs: 10_000 } });
    const obs = await startObservability({ ...base, metrics: { listen: { host: '127.0.0.1', port: 0 }, backendProbeIntervalMs: 0 } }, silent);
    try {
      const { host, port } = obs.address!;
      const res = await fetch(`http://${host}:${port}/readyz`, { signal: AbortSignal.timeout(15_000) });
      const body = (await res.json()) as { checks: Record<string, { ok: boolean; detail: string }> };
      assert.deepEqual(body.checks['backend'], { ok: true, detail: 'greeting received', backends: { default: { ok: true, detail: 'greeting received' } } });
    } finally {
      await obs.close();
    }
    assert.deepEqual(leftovers(harness), []);
  });
});
