/**
 * A backend that offers less than it did is refused (issue 9.7). A process of any local user can
 * bind the backend's port while the real server is down and leave CRAM-MD5 out of its CAPA; a man
 * in the middle can strip STLS and offer an APOP timestamp. Here a real Dovecot offering more is
 * swapped for a real Dovecot offering less on the same port, with a tap proving what crossed.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startDovecot, type Dovecot, type DovecotProfile } from '../harness/dovecot.js';
import { sampleMaildrop } from '../harness/maildrop.js';
import { startTestProxy, type BackendOverrides, type ProxyOverrides, type TestProxy } from '../harness/popwarden.js';
import { RawClient } from '../harness/raw-client.js';
import { startTap, type Tap } from '../harness/tap.js';
import { Reply } from '../../src/pop3/replies.js';
import { BACKEND_MEMORY_FILE } from '../../src/backend/memory.js';
import { scratchDir } from '../harness/scratch.js';

const { alice } = sampleMaildrop();
const CLI = new URL('../../src/cli.ts', import.meta.url).pathname;

async function login(proxy: TestProxy): Promise<string> {
  const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
  try {
    assert.match(await client.readLine(), /^\+OK /);
    assert.match(await client.command(`USER ${alice.user}`), /^\+OK/);
    return await client.command(`PASS ${alice.pass}`, 15_000);
  } finally {
    client.destroy();
  }
}

/** The real backend, a tap in front of it, popwarden in front of the tap; `swap` replaces the backend on its port. */
async function withSwap(
  first: DovecotProfile,
  backend: Omit<BackendOverrides, 'host' | 'port'>,
  body: (rig: { proxy: TestProxy; tap: Tap; stateDir: string; swap(profile: DovecotProfile): Promise<void> }) => Promise<void>,
): Promise<void> {
  let dovecot: Dovecot = await startDovecot({ profile: first });
  const tap = await startTap(dovecot.host, dovecot.port);
  const stateDir = scratchDir('popwarden-state');
  const caFile = dovecot.caFile;
  const proxy = await startTestProxy({
    backend: { host: tap.host, port: tap.port, ...(caFile === undefined ? {} : { caFile }), ...backend },
    stateDir,
  });
  try {
    await body({
      proxy,
      tap,
      stateDir,
      swap: async (profile) => {
        const port = dovecot.port;
        await dovecot.stop();
        dovecot = await startDovecot({ profile, port });
      },
    });
  } finally {
    await proxy.stop();
    await tap.stop();
    await dovecot.stop();
  }
}

// The finally above stops this file's own chain (real-backend-penalty.test.ts stops its two
// proxies alike): each file starts and stops what it built.
describe('a backend that offers less than before is refused (issue 9.7)', () => {
  test('CRAM-MD5 swapped for a USER-only server on the same port: refused, no PASS crosses, until forgotten', async () => {
    // trustLoopback: true (the operator's explicit word) would let USER/PASS through on its own.
    await withSwap('cram-md5-only', { trustLoopback: true }, async ({ proxy, tap, stateDir, swap }) => {
      assert.equal(await login(proxy), Reply.loggedIn);
      assert.equal(statSync(join(stateDir, BACKEND_MEMORY_FILE)).mode & 0o777, 0o600);
      await swap('user-only');
      // The first login within a minute reuses the real server's CAPA answer (capability-cache.ts):
      // it sends AUTH CRAM-MD5, which the impostor refuses before any credential is sent.
      const reusedFrom = tap.bytesClientToServer().length;
      assert.equal(await login(proxy), Reply.backendUnavailable);
      assert.equal(tap.bytesClientToServer().subarray(reusedFrom).toString('latin1'), 'AUTH CRAM-MD5\r\n');
      const sentBefore = tap.bytesClientToServer().length;
      assert.equal(await login(proxy), Reply.loginNotPossibleSafely);
      const sent = tap.bytesClientToServer().subarray(sentBefore).toString('latin1');
      assert.doesNotMatch(sent, /PASS|USER|AUTH/, `sent to the impostor: ${JSON.stringify(sent)}`);
      assert.ok(!sent.includes(alice.pass));
      const refusal = proxy.logs().find((l) => l['msg'] === 'refusing to log in to the backend');
      assert.match(String(refusal?.['reason']), /offered CRAM-MD5 .*before.*now offers only cleartext logins/);
      assert.match(String(refusal?.['fix']), /popwarden backend forget 127\.0\.0\.1:\d+/);

      const address = `${tap.host}:${tap.port}`;
      const forget = await promisify(execFile)(process.execPath, ['--import', 'tsx', CLI, 'backend', 'forget', address, '--state-dir', stateDir]);
      assert.match(forget.stdout, /forgot/);
      assert.equal(await login(proxy), Reply.loggedIn, 'the operator accepted the change: the next login remembers USER only');
    });
  });

  test('STLS stripped and an APOP timestamp offered on a non-trusted link: refused, no APOP digest crosses', async () => {
    await withSwap('stls', { tls: 'auto', trustLoopback: false }, async ({ proxy, tap, swap }) => {
      assert.equal(await login(proxy), Reply.loggedIn);
      await swap('apop-only');
      const sentBefore = tap.bytesClientToServer().length;
      assert.equal(await login(proxy), Reply.loginNotPossibleSafely);
      const sent = tap.bytesClientToServer().subarray(sentBefore).toString('latin1');
      assert.doesNotMatch(sent, /APOP|PASS|AUTH/, `sent to the impostor: ${JSON.stringify(sent)}`);
      assert.match(proxy.logText(), /CRAM-MD5 with STLS before.*now offers APOP without STLS/);
    });
  });
});

describe('loopback trust for cleartext (issue 9.7)', () => {
  test('by default a loopback backend on an unprivileged port gets no cleartext password', async () => {
    const dovecot = await startDovecot({ profile: 'user-only' });
    const tap = await startTap(dovecot.host, dovecot.port);
    const proxy = await startTestProxy({ backend: { host: tap.host, port: tap.port, trustLoopback: undefined } });
    try {
      assert.equal(await login(proxy), Reply.loginNotPossibleSafely);
      assert.doesNotMatch(tap.bytesClientToServer().toString('latin1'), /PASS|USER/);
    } finally {
      await proxy.stop();
      await tap.stop();
      await dovecot.stop();
    }
  });
});
