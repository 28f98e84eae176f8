/**
 * popwarden in front of real legacy POP3 servers (issue 12), each run inetd-style as a TCP
 * backend by test/harness/legacy.ts, with a recording tap on the backend link:
 *
 *   client --TLS--> popwarden --> tap --> socat fork, EXEC:server,nofork (one server per connection)
 *
 * What every server does with every real client (byte-identical fetches, DELE then QUIT, DELE then
 * a killed client, no password on the link) is the interop matrix, test/interop/. This file keeps
 * what is particular to one server: popa3d's cleartext login needs the operator's setting,
 * solid-pop3d's APOP timestamp for users without a secret (the retry in clear and its limits) and
 * its user-name spellings, and the harness's own promises.
 *
 * What each server offers and what popwarden chose (also in the matrix's table):
 *
 * | server (Debian bookworm)            | greeting                          | CAPA                                  | popwarden's backend login          |
 * |-------------------------------------|-----------------------------------|---------------------------------------|------------------------------------|
 * | popa3d 1.0.3-1.1                    | `+OK` (no timestamp)              | `-ERR` (none)                         | USER/PASS, only because loopback is trusted (`backend_trust_loopback`, default on) or `allow_plaintext_backend_auth`; otherwise refused |
 * | mailutils pop3d 3.15, popauth db    | `+OK POP3 Ready <pid.time@host>`  | TOP UIDL RESP-CODES PIPELINING AUTH-RESP-CODE EXPIRENEVER USER | APOP                    |
 * | mailutils pop3d 3.15, popauth + STLS| same                              | same + STLS                           | STLS, then APOP (timestamp of the clear greeting) |
 * | solid-pop3d 0.15-31                 | `+OK Solid POP3 server ready <pid.time@host>` | `-ERR unknown command`    | auto: APOP, refused (no user has an APOP secret in ~/.spop3d), then the same password with USER/PASS on a fresh connection (the link is trusted loopback); remembered, so the next login goes straight to USER/PASS |
 *
 * Seen on the way: solid-pop3d serves each message with the mbox separator's blank line (two
 * more octets than the message), answers a failed login after about 1 s, and accepts
 * `alice@anything` and `alice%anything` as alice. mailutils stamps X-IMAPbase/X-UID/X-UIDL
 * headers into the mbox in the first session that opens it, with or without QUIT, so its RETR
 * grows from the second session on (456 -> 523 octets for message 1). popa3d refused (no
 * trusted link): the client gets `-ERR [SYS/TEMP] Login to the mail server is not possible
 * right now` and popa3d only ever sees `CAPA`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { startLegacyServer, type LegacyServer } from '../harness/legacy.js';
import { sampleMaildrop, type SampleAccount } from '../harness/maildrop.js';
import { startChain, type Chain as TappedChain, type TestProxy } from '../harness/popwarden.js';
import { RawClient } from '../harness/raw-client.js';
import { commandsSent, passwordFormsIn as passwordFormsOf } from '../harness/tap.js';

const { alice } = sampleMaildrop();

/** The forms of alice's password that appear in `bytes`. */
const passwordFormsIn = (bytes: Buffer): string[] => passwordFormsOf(bytes, alice.user, alice.pass);

/** A legacy server, a tap on its link and popwarden in front of the tap. */
type Chain = TappedChain<LegacyServer>;

/** Logs in through popwarden's implicit-TLS port with USER/PASS; returns the client and PASS's reply. */
async function loginThroughProxy(proxy: TestProxy, account: SampleAccount, user = account.user): Promise<{ client: RawClient; reply: string }> {
  const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
  await client.readLine();
  const userReply = await client.command(`USER ${user}`);
  assert.match(userReply, /^\+OK/);
  return { client, reply: await client.command(`PASS ${account.pass}`, 15_000) };
}

/** The backend mechanism of popwarden's last successful login audit line. */
function lastBackendMechanism(proxy: TestProxy): unknown {
  return proxy
    .logs()
    .filter((l) => l['event'] === 'login' && l['result'] === 'success')
    .at(-1)?.['backendMechanism'];
}

describe('popa3d (USER/PASS only): the cleartext login needs the operator setting', { timeout: 60_000 }, () => {
  let server: LegacyServer;
  before(async () => {
    server = await startLegacyServer({ server: 'popa3d' });
  });
  after(async () => {
    await server?.stop();
  });

  test('without trust in loopback and without allow_plaintext_backend_auth: refused, PASS never sent', async () => {
    const chain = await startChain(server, { trustLoopback: false });
    try {
      const { client, reply } = await loginThroughProxy(chain.proxy, alice);
      client.destroy();
      assert.match(reply, /^-ERR/);
      assert.ok(!chain.tap.bytesClientToServer().toString('latin1').includes('PASS'), 'PASS reached popa3d');
      assert.deepEqual(passwordFormsIn(chain.tap.bytesClientToServer()), []);
      assert.match(chain.proxy.logText(), /refusing to log in to the backend/);
    } finally {
      await chain.stop();
    }
  });

  test('allow_plaintext_backend_auth lets it log in with USER/PASS', async () => {
    const chain = await startChain(server, { trustLoopback: false, allowPlaintextAuth: true });
    try {
      const { client, reply } = await loginThroughProxy(chain.proxy, alice);
      assert.match(reply, /^\+OK/);
      assert.equal(lastBackendMechanism(chain.proxy), 'user');
      assert.match(await client.command('QUIT'), /^\+OK/);
      client.destroy();
    } finally {
      await chain.stop();
    }
  });
});

describe('solid-pop3d: an APOP timestamp for users without an APOP secret', { timeout: 60_000 }, () => {
  let server: LegacyServer;
  let chain: Chain;
  before(async () => {
    server = await startLegacyServer({ server: 'solid-pop3d' });
    chain = await startChain(server);
  });
  after(async () => {
    await chain?.stop();
    await server?.stop();
  });

  /** The commands popwarden sent to solid-pop3d since `from` (an offset into the tap's bytes), one per line, APOP digests cut. */
  const commandsSince = (from: number): string[] => commandsSent(chain.tap, from);

  // solid-pop3d greets with a timestamp for everyone, and alice has no ~/.spop3d secret: APOP is
  // refused, and popwarden retries the same password with USER/PASS on a fresh connection, since
  // this loopback link may carry it. One client attempt, one audit line, one guard reservation.
  test('auth auto logs alice in: APOP refused, the same password retried with USER/PASS on a fresh connection', async () => {
    const connectionsBefore = chain.tap.connections;
    const from = chain.tap.bytesClientToServer().length;
    const { client, reply } = await loginThroughProxy(chain.proxy, alice);
    try {
      assert.match(reply, /^\+OK/, chain.tap.bytesServerToClient().toString('latin1').slice(-300));
      assert.equal(lastBackendMechanism(chain.proxy), 'user');
      assert.match(await client.command('STAT'), new RegExp(`^\\+OK ${alice.messages.length} `));
      assert.match(await client.command('QUIT'), /^\+OK/);
    } finally {
      client.destroy();
    }
    assert.equal(chain.tap.connections - connectionsBefore, 2);
    assert.deepEqual(commandsSince(from), ['CAPA', 'APOP alice <digest>', 'CAPA', 'USER alice', 'PASS <password>', 'STAT', 'QUIT']);
    const logins = chain.proxy.logs().filter((l) => l['event'] === 'login');
    assert.equal(logins.length, 1, 'one attempt, one audit line');

    // popwarden now knows alice logs in in clear here: no APOP, one connection.
    const again = chain.tap.bytesClientToServer().length;
    const second = await loginThroughProxy(chain.proxy, alice);
    second.client.destroy();
    assert.match(second.reply, /^\+OK/);
    assert.deepEqual(commandsSince(again), ['CAPA', 'USER alice', 'PASS <password>']);
  });

  test('a wrong password is one failure with the one reply, whether or not the retry ran', async () => {
    await server.whenIdle();
    const from = chain.tap.bytesClientToServer().length;
    const client = await RawClient.tls(chain.proxy.host, chain.proxy.tlsPort, chain.proxy.caFile);
    try {
      await client.readLine();
      await client.command('USER bob');
      assert.equal(await client.command('PASS not-bobs-password', 15_000), '-ERR [AUTH] Authentication failed');
    } finally {
      client.destroy();
    }
    assert.deepEqual(commandsSince(from), ['CAPA', 'APOP bob <digest>', 'CAPA', 'USER bob', 'PASS <password>']);
    const failures = chain.proxy.logs().filter((l) => l['event'] === 'login' && l['user'] === 'bob');
    assert.deepEqual(failures.map((l) => l['result']), ['failure']);
  });

  test('no retry in clear where the link may not carry a password: APOP stays the only try', async () => {
    const guarded = await startChain(server, { trustLoopback: false });
    try {
      const { client, reply } = await loginThroughProxy(guarded.proxy, alice);
      client.destroy();
      assert.equal(reply, '-ERR [AUTH] Authentication failed');
      assert.equal(guarded.tap.connections, 1);
      assert.deepEqual(passwordFormsIn(guarded.tap.bytesClientToServer()), []);
    } finally {
      await guarded.stop();
    }
  });

  test('"alice@anything" and "alice%anything" are alice to solid-pop3d (a limiter keyed on the raw name sees other users)', async () => {
    const pinned = await startChain(server, { auth: 'user' });
    try {
      for (const user of ['alice@popwarden.test', 'alice%other.example']) {
        const { client, reply } = await loginThroughProxy(pinned.proxy, alice, user);
        assert.match(reply, /^\+OK/, user);
        // Three messages: alice's maildrop (bob has one).
        assert.match(await client.command('STAT'), new RegExp(`^\\+OK ${alice.messages.length} `), user);
        assert.match(await client.command('QUIT'), /^\+OK/);
        client.destroy();
      }
    } finally {
      await pinned.stop();
    }
  });
});

describe('the legacy harness itself', { timeout: 60_000 }, () => {
  test('stop() ends the listener and a server still holding a connection: no process, no zombie left', async () => {
    const server = await startLegacyServer({ server: 'popa3d' });
    const client = await RawClient.plain(server.host, server.port);
    try {
      assert.equal(await client.readLine(), '+OK');
      const pids = server.processes();
      assert.equal(pids[0], server.pid);
      assert.ok(pids.length >= 2, `a popa3d serves the open connection: ${pids.join(' ')}`);
      await server.stop();
      // A zombie keeps its /proc entry until it is reaped.
      assert.deepEqual(pids.filter((pid) => fs.existsSync(`/proc/${pid}`)), []);
      assert.equal(fs.existsSync(server.dir), false);
      assert.ok(await client.closedWithin(5_000), 'the connection ends with its server');
    } finally {
      client.destroy();
      await server.stop();
    }
  });

  test('a server that is not unpacked fails at once with the command that installs it', async () => {
    await assert.rejects(
      startLegacyServer({ server: 'mailutils', peersDir: '/nonexistent/popwarden-peers' }),
      /mailutils-pop3d\/usr\/sbin\/pop3d is missing: run "sudo bash scripts\/test-all.sh --install-only"/,
    );
  });
});
