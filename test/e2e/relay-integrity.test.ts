/**
 * The relay after login: bytes arrive exactly as the backend sent them, replies stay framed, and
 * nothing ever makes a truncated message look complete or makes the backend delete mail the
 * client did not commit with QUIT. SECURITY-TESTS.md D-01..D-07, D-09, R-05, R-06, R-07, B-04.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startFakeBackend, legacyScript, type FakeBackend, type LegacyOptions } from '../harness/fake-backend.js';
import { dotStuff, sampleMaildrop } from '../harness/maildrop.js';
import { startTestProxy, type ProxyOverrides, type TestProxy } from '../harness/popwarden.js';
import { RawClient } from '../harness/raw-client.js';

const PASSWORD = 's3cret!pw';
const alice = sampleMaildrop().alice;

interface Rig {
  backend: FakeBackend;
  proxy: TestProxy;
  stop(): Promise<void>;
}

async function rig(options: LegacyOptions = {}, overrides: Partial<ProxyOverrides> = {}): Promise<Rig> {
  const backend = await startFakeBackend(legacyScript(options));
  const proxy = await startTestProxy({ ...overrides, backend: { host: backend.host, port: backend.port, ...overrides.backend } });
  return {
    backend,
    proxy,
    async stop() {
      await proxy.stop();
      await backend.stop();
    },
  };
}

async function loggedIn(proxy: TestProxy): Promise<RawClient> {
  const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
  await client.readLine();
  assert.equal(await client.command('USER alice'), '+OK Send PASS');
  assert.equal(await client.command(`PASS ${PASSWORD}`), '+OK Logged in');
  return client;
}

describe('relay of a well-behaved backend', () => {
  let r: Rig;
  before(async () => (r = await rig()));
  after(async () => r.stop());

  test('every message arrives byte-identical, dot-stuffing untouched (D-03, D-04)', async () => {
    const client = await loggedIn(r.proxy);
    for (const [index, message] of alice.messages.entries()) {
      const { status, body } = await client.multi(`RETR ${index + 1}`);
      assert.match(status, /^\+OK/);
      assert.ok(body.equals(dotStuff(message.bytes)), `message ${index + 1}`);
    }
    client.destroy();
  });

  test('single- and multi-line replies stay framed when pipelined (D-06)', async () => {
    const client = await loggedIn(r.proxy);
    client.write('LIST 99\r\nRETR 99\r\nUIDL\r\nSTAT\r\nLIST 1\r\nTOP 1 0\r\nNOOP\r\n');
    assert.match(await client.readLine(), /^-ERR/);
    assert.match(await client.readLine(), /^-ERR/);
    assert.match(await client.readLine(), /^\+OK/);
    assert.match((await client.readUntilTerminator()).toString('latin1'), /^1 \S+\r\n2 \S+\r\n3 \S+\r\n\.\r\n$/);
    assert.match(await client.readLine(), /^\+OK 3 /);
    assert.match(await client.readLine(), /^\+OK 1 \d+$/);
    assert.match(await client.readLine(), /^\+OK/);
    await client.readUntilTerminator();
    assert.equal(await client.readLine(), '+OK');
    client.destroy();
  });

  test('CAPA after login keeps the backend\'s extensions and popwarden\'s auth lines (R-07)', async () => {
    const client = await loggedIn(r.proxy);
    assert.match(await client.command('CAPA'), /^\+OK/);
    const lines = (await client.readUntilTerminator()).toString('latin1').split('\r\n');
    assert.ok(lines.includes('TOP') && lines.includes('UIDL'));
    assert.ok(lines.includes('SASL PLAIN LOGIN'), 'popwarden\'s SASL, not the backend\'s');
    assert.ok(!lines.includes('STLS'));
    client.destroy();
  });

  test('QUIT is relayed with the backend\'s reply, and DELE then commits (R-06)', async () => {
    const client = await loggedIn(r.proxy);
    client.write('DELE 1\r\nQUIT\r\n');
    assert.match(await client.readLine(), /^\+OK/);
    assert.equal(await client.readLine(), '+OK Logging out.');
    assert.equal(await client.closedWithin(2_000), true);
    const lines = r.backend.connections().at(-1)!.lines();
    assert.deepEqual(lines.slice(-2), ['DELE 1', 'QUIT']);
  });

  test('a client that drops without QUIT makes popwarden close the backend without QUIT (D-07)', async () => {
    const client = await loggedIn(r.proxy);
    assert.match(await client.command('DELE 1'), /^\+OK/);
    const conn = r.backend.connections().at(-1)!;
    client.destroy();
    await conn.whenClosed;
    assert.ok(!conn.lines().includes('QUIT'));
    assert.equal(conn.lines().at(-1), 'DELE 1');
  });

  test('a client that half-closes after its last commands still gets every reply, and its QUIT commits', async () => {
    // On the STLS port; see docs/SECURITY.md, "Relay guarantees", for why implicit TLS does not wait for half-closed clients.
    const client = await RawClient.plain(r.proxy.host, r.proxy.stlsPort);
    await client.readLine();
    assert.equal(await client.command('STLS'), '+OK Begin TLS negotiation');
    await client.upgrade(r.proxy.caFile);
    await client.command('USER alice');
    assert.equal(await client.command(`PASS ${PASSWORD}`), '+OK Logged in');
    client.write('DELE 1\r\nDELE 2\r\nQUIT\r\n');
    client.end(); // shutdown(SHUT_WR), or TLS close_notify: done sending, still reading
    assert.equal(await client.closedWithin(3_000), true);
    assert.match(client.unread().toString('latin1'), /^\+OK[^\r]*\r\n\+OK[^\r]*\r\n\+OK Logging out\.\r\n$/);
    assert.deepEqual(r.backend.connections().at(-1)!.lines().slice(-3), ['DELE 1', 'DELE 2', 'QUIT']);
  });

  test('STLS, USER, PASS, APOP and AUTH after login are refused and not forwarded (R-10)', async () => {
    const client = await loggedIn(r.proxy);
    for (const command of ['STLS', 'USER bob', 'PASS x', 'APOP bob 0123', 'AUTH PLAIN']) {
      assert.equal(await client.command(command), '-ERR Command not permitted after login', command);
    }
    const conn = r.backend.connections().at(-1)!;
    assert.ok(!conn.lines().some((l) => /^(STLS|USER bob|PASS x|APOP|AUTH PLAIN)/.test(l)));
    client.destroy();
  });

  test('a trailing space does not change how a reply is framed (RETR 1 with a space)', async () => {
    const client = await loggedIn(r.proxy);
    const { status, body } = await client.multi('RETR 1 ');
    assert.match(status, /^\+OK/);
    assert.ok(body.equals(dotStuff(alice.messages[0]!.bytes)));
    assert.equal(await client.command('NOOP'), '+OK');
    client.destroy();
  });

  test('unknown verbs are forwarded and framed as one line (D-06)', async () => {
    const client = await loggedIn(r.proxy);
    assert.match(await client.command('XSENDER 1'), /^-ERR/);
    assert.match(await client.command('NOOP'), /^\+OK/);
    assert.ok(r.backend.connections().at(-1)!.lines().includes('XSENDER 1'));
    client.destroy();
  });

  test("qpopper's XTND, whose exchanges popwarden cannot frame, gets one -ERR here and never reaches the backend", async () => {
    const client = await loggedIn(r.proxy);
    assert.equal(await client.command('XTND XMIT'), '-ERR XTND is not available through this server');
    assert.match(await client.command('NOOP'), /^\+OK/);
    assert.ok(!r.backend.connections().at(-1)!.lines().some((l) => l.startsWith('XTND')));
    client.destroy();
  });
});

// One finding's scenario per test, written out whole: the backend's misbehaviour, then what the
// client must and must not see. They share the rig and the close assertions; a table would hide
// each scenario behind its parameters.
describe('relay of a failing backend', () => {
  test('a backend that dies mid-RETR never yields a terminator or an -ERR in the body (D-01, FIN and RST)', async () => {
    for (const how of ['end', 'destroy'] as const) {
      const r = await rig({ cutRetr: { message: 2, afterBytes: 30_000, how } });
      try {
        const client = await loggedIn(r.proxy);
        client.write('RETR 2\r\nNOOP\r\n');
        assert.equal(await client.closedWithin(5_000), true, how);
        const received = client.unread();
        const status = received.indexOf('\r\n');
        const body = received.subarray(status + 2);
        assert.match(received.subarray(0, status).toString('latin1'), /^\+OK/);
        assert.equal(body.length, 30_000, `${how}: exactly the bytes the backend sent`);
        assert.ok(body.equals(dotStuff(alice.messages[1]!.bytes).subarray(0, 30_000)));
        assert.equal(received.includes('\r\n.\r\n'), false);
        assert.equal(received.includes('-ERR'), false);
        assert.ok(!r.backend.connections().at(-1)!.lines().includes('QUIT'));
      } finally {
        await r.stop();
      }
    }
  });

  test('a half terminator and then silence ends at the idle timeout, never completed (D-02)', async () => {
    const r = await rig(
      {
        onCommand: ({ conn, verb }) => {
          if (verb !== 'RETR') return;
          void conn.write('+OK 10 octets\r\nhello\r\n.\r');
          return true;
        },
      },
      { timeouts: { backendIdleMs: 500 } },
    );
    try {
      const client = await loggedIn(r.proxy);
      client.write('RETR 1\r\n');
      assert.equal(await client.closedWithin(3_000), true);
      assert.equal(client.unread().toString('latin1'), '+OK 10 octets\r\nhello\r\n.\r');
    } finally {
      await r.stop();
    }
  });

  test('bare-LF dot lines are body, not the end of the reply (D-05)', async () => {
    const body = 'x\n.\n+OK forged\r\nreal\r\n.\r\n';
    const r = await rig({
      onCommand: ({ conn, verb }) => {
        if (verb !== 'RETR') return;
        void conn.write(`+OK\r\n${body}`);
        return true;
      },
    });
    try {
      const client = await loggedIn(r.proxy);
      client.write('RETR 1\r\nNOOP\r\n');
      assert.equal(await client.readLine(), '+OK');
      assert.equal((await client.readUntilTerminator()).toString('latin1'), body);
      assert.equal(await client.readLine(), '+OK');
      client.destroy();
    } finally {
      await r.stop();
    }
  });

  test('a terminator split across writes is found once (D-03)', async () => {
    const r = await rig({
      onCommand: async ({ conn, verb }) => {
        if (verb !== 'RETR') return;
        for (const part of ['+OK\r\n..dot\r\nend\r', '\n.', '\r\n']) {
          await conn.write(part);
          // The gap is the subject: it makes popwarden read the terminator in separate chunks,
          // which no event on this side can force (the session tests split chunks exactly).
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        return true;
      },
    });
    try {
      const client = await loggedIn(r.proxy);
      client.write('RETR 1\r\nNOOP\r\n');
      assert.equal(await client.readLine(), '+OK');
      assert.equal((await client.readUntilTerminator()).toString('latin1'), '..dot\r\nend\r\n.\r\n');
      assert.equal(await client.readLine(), '+OK');
      client.destroy();
    } finally {
      await r.stop();
    }
  });

  test('two replies to one command end the session; later replies are never shifted (B-04)', async () => {
    const r = await rig({
      onCommand: ({ conn, verb }) => {
        if (verb !== 'NOOP') return;
        void conn.write('+OK\r\n+OK injected\r\n');
        return true;
      },
    });
    try {
      const client = await loggedIn(r.proxy);
      client.write('NOOP\r\nSTAT\r\n');
      assert.equal(await client.readLine(), '+OK');
      assert.equal(await client.closedWithin(2_000), true);
      assert.equal(client.unread().includes('injected'), false);
    } finally {
      await r.stop();
    }
  });

  test('an unsolicited line while idle closes the session (B-04)', async () => {
    const r = await rig();
    try {
      const client = await loggedIn(r.proxy);
      await r.backend.connections().at(-1)!.write('+OK surprise\r\n');
      assert.equal(await client.closedWithin(2_000), true);
      assert.equal(client.unread().includes('surprise'), false);
    } finally {
      await r.stop();
    }
  });

  test('a lost QUIT reply is never turned into +OK (D-09)', async () => {
    const r = await rig({
      onCommand: ({ conn, verb }) => {
        if (verb !== 'QUIT') return;
        conn.destroy();
        return true;
      },
    });
    try {
      const client = await loggedIn(r.proxy);
      client.write('QUIT\r\n');
      assert.equal(await client.closedWithin(2_000), true);
      assert.equal(client.unread().includes('+OK'), false);
    } finally {
      await r.stop();
    }
  });

  test('an over-long status line is not split into two client lines (R-04)', async () => {
    const r = await rig({
      onCommand: ({ conn, verb }) => {
        if (verb !== 'STAT') return;
        void conn.write(`+OK ${'9'.repeat(600)}\r\n`);
        return true;
      },
    });
    try {
      const client = await loggedIn(r.proxy);
      client.write('STAT\r\n');
      assert.equal(await client.closedWithin(2_000), true);
      assert.equal(client.unread().includes('999'), false);
      assert.match(client.unread().toString('latin1'), /^-ERR \[SYS\/TEMP\]/);
    } finally {
      await r.stop();
    }
  });
});

describe('relayed status lines', () => {
  test('control bytes in a backend status line never reach the client (S-08)', async () => {
    const r = await rig({
      onCommand: ({ conn, verb }) => {
        if (verb !== 'DELE') return;
        void conn.write('-ERR \x1b[31;1;4mPOP3\x1b[0m no such message\x07\r\n');
        return true;
      },
    });
    try {
      const client = await loggedIn(r.proxy);
      const reply = await client.command('DELE 9');
      assert.equal(reply, '-ERR [31;1;4mPOP3[0m no such message');
      assert.doesNotMatch(reply, /[\x00-\x1f\x7f]/);
      client.destroy();
    } finally {
      await r.stop();
    }
  });
});

describe('timers', () => {
  test('a client that never reads is dropped after the write stall, without QUIT (D-10)', async () => {
    const r = await rig({}, { timeouts: { clientWriteStallMs: 800 } });
    try {
      const client = await loggedIn(r.proxy);
      client.socket.pause();
      client.write('RETR 2\r\nRETR 2\r\nRETR 2\r\n');
      const conn = r.backend.connections().at(-1)!;
      await conn.whenClosed;
      assert.ok(!conn.lines().includes('QUIT'));
      assert.match(r.proxy.logText(), /"reason":"client-write-stall"/);
      client.destroy();
    } finally {
      await r.stop();
    }
  });

  test('autologout closes both sides silently and sends no QUIT (R-05)', async () => {
    const r = await rig({}, { timeouts: { idleMs: 400 } });
    try {
      const client = await loggedIn(r.proxy);
      const conn = r.backend.connections().at(-1)!;
      assert.equal(await client.closedWithin(3_000), true);
      assert.equal(client.unread().length, 0, 'no bytes to the client');
      await conn.whenClosed;
      assert.ok(!conn.lines().includes('QUIT'));
    } finally {
      await r.stop();
    }
  });

  test('a slow reply is not idle: the autologout waits for it (D-11)', async () => {
    const r = await rig(
      {
        onCommand: async ({ conn, verb }) => {
          if (verb !== 'RETR') return;
          await conn.write('+OK\r\n');
          // The pace is the subject: the whole reply takes longer than idleMs, each gap less.
          for (let i = 0; i < 8; i++) {
            await new Promise((resolve) => setTimeout(resolve, 100));
            await conn.write(`line ${i}\r\n`);
          }
          await conn.write('.\r\n');
          return true;
        },
      },
      { timeouts: { idleMs: 300 } },
    );
    try {
      const client = await loggedIn(r.proxy);
      const { status, body } = await client.multi('RETR 1');
      assert.equal(status, '+OK');
      assert.match(body.toString('latin1'), /line 7\r\n\.\r\n$/);
      client.destroy();
    } finally {
      await r.stop();
    }
  });

  test('a silent pre-login client is closed at the pre-auth deadline (X-01)', async () => {
    const r = await rig({}, { timeouts: { preAuthMs: 400 } });
    try {
      const client = await RawClient.tls(r.proxy.host, r.proxy.tlsPort, r.proxy.caFile);
      await client.readLine();
      client.write('CAPA\r\n');
      assert.equal(await client.closedWithin(2_000), true);
      assert.match(client.unread().toString('latin1'), /-ERR Login timed out\r\n$/);
    } finally {
      await r.stop();
    }
  });
});


describe('shutdown', () => {
  test('a RETR in flight finishes, the next command gets [SYS/TEMP], idle sessions close, no QUIT (D-08)', async () => {
    // The RETR stays in flight, its terminator held back, until the shutdown is under way.
    let finishRetr!: () => void;
    const shutdownStarted = new Promise<void>((resolve) => (finishRetr = resolve));
    const r = await rig({
      onCommand: async ({ conn, verb }) => {
        if (verb !== 'RETR') return;
        await conn.write('+OK\r\n');
        for (let i = 0; i < 5; i++) await conn.write(`line ${i}\r\n`);
        await shutdownStarted;
        await conn.write('.\r\n');
        return true;
      },
    });
    try {
      const busy = await loggedIn(r.proxy);
      const idle = await loggedIn(r.proxy);
      busy.write('RETR 1\r\n');
      assert.equal(await busy.readLine(), '+OK');
      busy.write('STAT\r\n');
      const closing = r.proxy.proxy.close({ drainMs: 5_000 });
      assert.equal(await idle.closedWithin(1_000), true, 'an idle session closes at once');
      finishRetr();
      assert.match((await busy.readUntilTerminator()).toString('latin1'), /line 4\r\n\.\r\n$/, 'the RETR completes');
      assert.equal(await busy.readLine(), '-ERR [SYS/TEMP] Server is shutting down, try again later');
      assert.equal(await busy.closedWithin(1_000), true);
      await closing;
      for (const conn of r.backend.connections()) {
        await conn.whenClosed;
        assert.ok(!conn.lines().includes('QUIT'));
      }
      await assert.rejects(RawClient.tls(r.proxy.host, r.proxy.tlsPort, r.proxy.caFile), 'no new connections');
    } finally {
      await r.stop(); // closing twice is harmless
    }
  });
});
