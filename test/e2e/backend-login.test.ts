/**
 * The backend login upgrade against scripted backends: the strongest mechanism wins, nothing
 * downgrades silently, hostile greetings and challenges fail closed, a password never crosses a
 * link where it is not allowed. SECURITY-TESTS.md B-01..B-09, F-04, F-05.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { startFakeBackend, legacyScript, type FakeBackend, type FakeScript, type LegacyOptions } from '../harness/fake-backend.js';
import { startTestProxy, type BackendOverrides, type ProxyOverrides, type TestProxy } from '../harness/popwarden.js';
import { RawClient } from '../harness/raw-client.js';
import { freePort } from '../harness/ports.js';

const PASSWORD = 's3cret!pw';

async function withRig(
  script: FakeScript,
  overrides: Partial<ProxyOverrides>,
  body: (backend: FakeBackend, proxy: TestProxy) => Promise<void>,
): Promise<void> {
  const backend = await startFakeBackend(script);
  const proxy = await startTestProxy({ ...overrides, backend: { host: backend.host, port: backend.port, ...overrides.backend } });
  try {
    await body(backend, proxy);
  } finally {
    await proxy.stop();
    await backend.stop();
  }
}

/** Logs in as alice over implicit TLS and returns the reply to PASS. */
async function tryLogin(proxy: TestProxy, password = PASSWORD): Promise<string> {
  const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
  await client.readLine();
  await client.command('USER alice');
  const reply = await client.command(`PASS ${password}`, 10_000);
  client.destroy();
  return reply;
}

/** Everything the backend received on every connection, for "the password never crossed" checks. */
function receivedByBackend(backend: FakeBackend): string {
  return Buffer.concat(backend.connections().map((c) => c.received())).toString('latin1');
}

function assertPasswordNeverSent(backend: FakeBackend): void {
  const wire = receivedByBackend(backend);
  const password = Buffer.from(PASSWORD, 'latin1');
  for (const form of [PASSWORD, password.toString('base64'), password.toString('hex'), Buffer.from(`\0alice\0${PASSWORD}`).toString('base64')]) {
    assert.equal(wire.includes(form), false, `backend link carried ${form}`);
  }
}

/** A non-loopback-looking backend: loopback trust off, as if the backend were on another host. */
const remote = (extra: Partial<BackendOverrides> = {}): Partial<ProxyOverrides> =>
  ({ backend: { trustLoopback: false, ...extra } as BackendOverrides });

describe('mechanism choice', () => {
  test('CRAM-MD5 is preferred over APOP when both are offered (B-02)', async () => {
    await withRig(legacyScript({ apop: true, cramMd5: true }), remote(), async (backend, proxy) => {
      assert.equal(await tryLogin(proxy), '+OK Logged in');
      assert.ok(backend.connections()[0]!.lines().includes('AUTH CRAM-MD5'));
      assertPasswordNeverSent(backend);
    });
  });

  test('APOP is used when the greeting has a timestamp and there is no CRAM-MD5', async () => {
    await withRig(legacyScript({ apop: true, userPass: false }), remote(), async (backend, proxy) => {
      assert.equal(await tryLogin(proxy), '+OK Logged in');
      assert.match(backend.connections()[0]!.lines().join('\n'), /^APOP alice [0-9a-f]{32}$/m);
      assertPasswordNeverSent(backend);
    });
  });

  test('no safe mechanism on a remote link: no login, [SYS/TEMP], and a log line naming the fix (B-01, B-09)', async () => {
    await withRig(legacyScript({ authPlain: true }), { ...remote(), authFailureDelayMs: 0 }, async (backend, proxy) => {
      const reply = await tryLogin(proxy);
      assert.match(reply, /^-ERR \[SYS\/TEMP\] /);
      const lines = backend.connections()[0]!.lines();
      assert.ok(!lines.some((l) => /^(USER|PASS|AUTH)/.test(l)), lines.join('|'));
      assertPasswordNeverSent(backend);
      assert.match(proxy.logText(), /--allow-plaintext-backend-auth/);
    });
  });

  test('--allow-plaintext-backend-auth permits AUTH PLAIN to a remote backend', async () => {
    await withRig(legacyScript({ authPlain: true }), remote({ allowPlaintextAuth: true }), async (backend, proxy) => {
      assert.equal(await tryLogin(proxy), '+OK Logged in');
      assert.match(backend.connections()[0]!.lines().join('\n'), /^AUTH PLAIN /m);
    });
  });

  test('a loopback backend without CAPA gets USER/PASS (popa3d style)', async () => {
    await withRig(legacyScript({ capa: false }), {}, async (backend, proxy) => {
      assert.equal(await tryLogin(proxy), '+OK Logged in');
      assert.ok(backend.connections()[0]!.lines().includes(`PASS ${PASSWORD}`));
    });
  });

  test('a forced mechanism the backend lacks fails clearly instead of falling back', async () => {
    await withRig(legacyScript({ apop: true }), { backend: { auth: 'cram-md5' } as BackendOverrides }, async (backend, proxy) => {
      assert.match(await tryLogin(proxy), /^-ERR \[SYS\/TEMP\] /);
      assert.ok(!backend.connections()[0]!.lines().some((l) => /^(APOP|USER|PASS)/.test(l)));
      assert.match(proxy.logText(), /the backend refused AUTH CRAM-MD5 before any credential was sent: check backend_auth/);
    });
  });

  test('for a named backend, the same failure names backends.NAME.auth, the key the operator edits', async () => {
    await withRig(legacyScript({ apop: true }), { backend: { auth: 'cram-md5', named: true } as BackendOverrides }, async (_backend, proxy) => {
      assert.match(await tryLogin(proxy), /^-ERR \[SYS\/TEMP\] /);
      assert.match(proxy.logText(), /before any credential was sent: check backends\.default\.auth/);
    });
  });
});

describe('hostile or broken backends', () => {
  const hostileTimestamps = [
    '<\u00c3\u00bf\u00c3\u00bf@x>',
    '<no-at-sign>',
    `<${'a'.repeat(300)}@${'b'.repeat(300)}>`,
    '<1.2@one> <3.4@two>',
  ];
  for (const timestamp of hostileTimestamps) {
    test(`a hostile APOP timestamp is not a timestamp: ${JSON.stringify(timestamp.slice(0, 24))} (B-03)`, async () => {
      await withRig(legacyScript({ apop: timestamp, userPass: false }), remote(), async (backend, proxy) => {
        assert.match(await tryLogin(proxy), /^-ERR \[SYS\/TEMP\] /);
        assert.ok(!backend.connections()[0]!.lines().some((l) => l.startsWith('APOP')));
      });
    });
  }

  test('extra lines after the greeting end the login (B-04)', async () => {
    const script: FakeScript = async (conn) => {
      await conn.write('+OK 2 messages (320 octets)\r\n1 120\r\n2 200\r\n.\r\n');
      await conn.readLine().catch(() => undefined);
    };
    await withRig(script, {}, async (backend, proxy) => {
      assert.match(await tryLogin(proxy), /^-ERR \[SYS\/TEMP\] /);
      assert.ok(!backend.connections()[0]!.lines().some((l) => /^(USER|PASS)/.test(l)));
    });
  });

  test('an -ERR greeting, or FIN right after connect, is a temporary failure with no backend text (B-05)', async () => {
    const scripts: FakeScript[] = [
      (conn) => void conn.write('-ERR \x1b[31mgo away\x1b[0m\r\n'),
      (conn) => conn.end(),
    ];
    for (const script of scripts) {
      await withRig(script, {}, async (_backend, proxy) => {
        const reply = await tryLogin(proxy);
        assert.equal(reply, '-ERR [SYS/TEMP] Mail server unavailable, try again later');
      });
    }
  });

  test('a backend that never greets times out as [SYS/TEMP] and the session stays usable (F-05)', async () => {
    await withRig(() => undefined, { timeouts: { backendStepMs: 300 } }, async (_backend, proxy) => {
      const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
      await client.readLine();
      await client.command('USER alice');
      assert.match(await client.command(`PASS ${PASSWORD}`), /^-ERR \[SYS\/TEMP\] /);
      assert.equal(await client.command('USER alice'), '+OK Send PASS', 'still usable for a retry');
      assert.equal(await client.command('QUIT'), '+OK Bye');
      client.destroy();
    });
  });

  test('a closed backend port answers [SYS/TEMP] within a second (F-04)', async () => {
    const port = await freePort();
    const proxy = await startTestProxy({ backend: { host: '127.0.0.1', port }, authFailureDelayMs: 2_000 });
    try {
      const started = Date.now();
      assert.match(await tryLogin(proxy), /^-ERR \[SYS\/TEMP\] /);
      assert.ok(Date.now() - started < 1_000);
    } finally {
      await proxy.stop();
    }
  });

  test('1 MiB without a line end before the greeting ends fails closed (B-08)', async () => {
    await withRig((conn) => void conn.write(Buffer.alloc(1024 * 1024, 0x41)), {}, async (_backend, proxy) => {
      assert.match(await tryLogin(proxy), /^-ERR \[SYS\/TEMP\] /);
    });
  });

  test('a garbled SASL challenge fails closed without sending a response', async () => {
    const options: LegacyOptions = {
      cramMd5: true,
      onCommand: ({ conn, verb }) => {
        if (verb !== 'AUTH') return;
        void conn.write('+ !!not base64!!\r\n');
        return true;
      },
    };
    await withRig(legacyScript(options), {}, async (backend, proxy) => {
      assert.match(await tryLogin(proxy), /^-ERR \[SYS\/TEMP\] /);
      assert.equal(backend.connections()[0]!.lines().at(-1), 'AUTH CRAM-MD5');
    });
  });
});


describe('backend STLS', () => {
  test('bytes after the backend\'s +OK to STLS are discarded and only TLS follows (B-07)', async () => {
    const script: FakeScript = async (conn) => {
      await conn.write('+OK ready\r\n');
      for (;;) {
        const line = await conn.readLine().catch(() => undefined);
        if (line === undefined) return;
        if (line === 'CAPA') await conn.write('+OK\r\nSTLS\r\nUSER\r\n.\r\n');
        // A MitM's dream: the real +OK plus a forged reply in the same segment.
        else if (line === 'STLS') return void (await conn.write('+OK Begin TLS\r\n+OK fake\r\n'));
        else await conn.write('-ERR no\r\n');
      }
    };
    await withRig(script, { timeouts: { backendStepMs: 1_000 } }, async (backend, proxy) => {
      assert.match(await tryLogin(proxy), /^-ERR \[SYS\/TEMP\] /);
      const received = backend.connections()[0]!.received();
      const afterStls = received.subarray(received.indexOf('STLS\r\n') + 6);
      assert.ok(afterStls.length > 0, 'popwarden started a handshake');
      assert.equal(afterStls[0], 0x16, 'the next bytes are a TLS handshake record, not a command');
      assertPasswordNeverSent(backend);
    });
  });

  test('--backend-tls starttls refuses a backend that does not offer STLS', async () => {
    await withRig(legacyScript({ apop: true }), { backend: { tls: 'starttls' } as BackendOverrides }, async (backend, proxy) => {
      assert.match(await tryLogin(proxy), /^-ERR \[SYS\/TEMP\] /);
      assert.ok(!backend.connections()[0]!.lines().some((l) => l.startsWith('APOP')));
      assert.match(proxy.logText(), /does not offer STLS/);
    });
  });
});

describe('XCLIENT (issue 13.7; Dovecot itself is in backend-client-address.test.ts)', () => {
  /** A backend that lists XCLIENT in CAPA but refuses it, as one that does not trust popwarden would. */
  const refusesXclient: FakeScript = async (conn) => {
    await conn.write('+OK ready\r\n');
    for (;;) {
      const line = await conn.readLine().catch(() => undefined);
      if (line === undefined) return;
      if (line === 'CAPA') await conn.write('+OK\r\nUSER\r\nXCLIENT\r\n.\r\n');
      else if (line.startsWith('XCLIENT ')) await conn.write('-ERR You are not from trusted IP\r\n');
      else await conn.write('+OK\r\n');
    }
  };

  test('offered in CAPA and refused: logged, and the login goes on as without it', async () => {
    await withRig(refusesXclient, { backend: { xclient: 'auto' } as BackendOverrides }, async (backend, proxy) => {
      assert.equal(await tryLogin(proxy), '+OK Logged in');
      const [capa, xclient, user] = backend.connections()[0]!.lines();
      assert.deepEqual([capa, user], ['CAPA', 'USER alice']);
      assert.match(xclient ?? '', /^XCLIENT ADDR=127\.0\.0\.1 PORT=\d+$/);
      await proxy.waitForLog((l) => l['msg'] === 'the backend refused XCLIENT; it sees popwarden as the client');
    });
  });

  test('backend_xclient: off never sends it', async () => {
    await withRig(refusesXclient, {}, async (backend, proxy) => {
      assert.equal(await tryLogin(proxy), '+OK Logged in');
      assert.ok(!backend.connections()[0]!.lines().some((l) => l.startsWith('XCLIENT')));
    });
  });
});
