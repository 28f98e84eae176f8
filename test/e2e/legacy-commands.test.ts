/**
 * Legacy behaviour popwarden tolerates (issue 12 point 8), against the real servers that show it:
 *
 * - LAST, `TOP n 0`, UIDL with and without an argument, LIST n, RSET after DELE: the same
 *   conversation, straight to the server and through popwarden, gives the same bytes, reply by
 *   reply, on Dovecot, popa3d, GNU mailutils pop3d and solid-pop3d (mailutils answers LAST with
 *   -ERR, and that passes through too);
 * - servers that add headers to a message (mailutils stamps X-IMAPbase, X-UID and X-UIDL into the
 *   mbox the first time a session opens it, and its LIST sizes include them from then on): LIST
 *   and RETR through popwarden are what the server says at that moment;
 * - UIDLs that change when the mailbox is made anew (mailutils' hold its UIDVALIDITY, a time):
 *   popwarden keeps none, so each session shows the server's current ones;
 * - servers that refuse further PASS commands on a connection after failures (popa3d and
 *   solid-pop3d hang up after the first): a client that mistypes on one connection to popwarden
 *   still logs in, because every login is a fresh backend connection;
 * - a line mailutils would answer with more than one line (it echoes a line over 512 octets back
 *   before its -ERR) never reaches it: popwarden's limit is 255 octets.
 *
 * The bytes no server we run sends (two -ERR lines for one command, LOGIN-DELAY, unadvertised AUTH
 * mechanisms) are in test/session/legacy-behaviour.test.ts.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';
import { startLegacyServer, type LegacyServer, type LegacyServerKind } from '../harness/legacy.js';
import { sampleMaildrop } from '../harness/maildrop.js';
import { startTestProxy, type TestProxy } from '../harness/popwarden.js';
import { RawClient } from '../harness/raw-client.js';
import { startTap, type Tap } from '../harness/tap.js';

const { alice } = sampleMaildrop();

/** The conversation: every command whose legacy behaviour issue 12.8 names, after a login. */
const COMMANDS = ['STAT', 'LIST', 'LIST 3', 'UIDL', 'UIDL 3', 'LAST', 'TOP 1 0', 'TOP 3 2', 'RETR 1', 'LAST', 'DELE 1', 'LIST 1', 'UIDL 1', 'STAT', 'RSET', 'STAT', 'LIST', 'NOOP'];

const MULTI_LINE = (command: string): boolean => /^(LIST|UIDL)$|^TOP |^RETR /.test(command);

/** Runs COMMANDS on a logged-in client and returns every reply as it came, then drops the connection (no QUIT: nothing changes). */
async function transcript(client: RawClient): Promise<string[]> {
  const replies: string[] = [];
  try {
    for (const command of COMMANDS) {
      if (MULTI_LINE(command)) {
        const { status, body } = await client.multi(command, 15_000);
        replies.push(`${command} -> ${status}\r\n${body.toString('latin1')}`);
      } else {
        replies.push(`${command} -> ${await client.command(command, 15_000)}`);
      }
    }
  } finally {
    client.destroy();
  }
  return replies;
}

async function loggedIn(client: RawClient, greeted = false): Promise<RawClient> {
  if (!greeted) await client.readLine();
  assert.match(await client.command(`USER ${alice.user}`), /^\+OK/);
  assert.match(await client.command(`PASS ${alice.pass}`, 15_000), /^\+OK/);
  return client;
}

/** A real server under test: where to reach it directly, and how to wait until its sessions end. */
interface Target {
  readonly label: string;
  readonly host: string;
  readonly port: number;
  whenIdle(): Promise<void>;
  stop(): Promise<void>;
}

async function startTarget(kind: 'dovecot' | LegacyServerKind): Promise<Target> {
  if (kind === 'dovecot') {
    const dovecot: Dovecot = await startDovecot({ profile: 'all' });
    // Dovecot serves each session in its own process; what one changes without QUIT is not kept.
    return { label: 'Dovecot', host: dovecot.host, port: dovecot.port, whenIdle: () => Promise.resolve(), stop: () => dovecot.stop() };
  }
  const server: LegacyServer = await startLegacyServer({ server: kind });
  return { label: server.label, host: server.host, port: server.port, whenIdle: () => server.whenIdle(), stop: () => server.stop() };
}

/** A tap on the link to host:port and popwarden in front of it. */
async function startChain(host: string, port: number): Promise<{ tap: Tap; proxy: TestProxy; stop(): Promise<void> }> {
  const tap = await startTap(host, port);
  const proxy = await startTestProxy({ backend: { host: tap.host, port: tap.port } });
  return {
    tap,
    proxy,
    async stop() {
      await proxy.stop();
      await tap.stop();
    },
  };
}

/** Runs the conversation straight to the server until two runs agree (a server may stamp the mailbox once). */
async function directTranscript(target: Target): Promise<string[]> {
  let previous: string[] | undefined;
  for (let run = 0; run < 3; run++) {
    await target.whenIdle();
    const current = await transcript(await loggedIn(await RawClient.plain(target.host, target.port)));
    if (previous !== undefined && current.join('') === previous.join('')) return current;
    previous = current;
  }
  assert.fail(`${target.label} answers the same conversation differently every time`);
}

for (const kind of ['dovecot', 'popa3d', 'mailutils', 'solid-pop3d'] as const) {
  describe(`${kind}: legacy commands pass through popwarden unchanged`, { timeout: 120_000 }, () => {
    let target: Target;
    let tap: Tap;
    let proxy: TestProxy;
    let stopChain: () => Promise<void> = () => Promise.resolve();
    before(async () => {
      target = await startTarget(kind);
      ({ tap, proxy, stop: stopChain } = await startChain(target.host, target.port));
    });
    after(async () => {
      await stopChain();
      await target?.stop();
    });

    test('LAST, TOP n 0, UIDL with and without argument, RSET after DELE: every reply byte-identical to the server\'s own', async () => {
      const direct = await directTranscript(target);
      await target.whenIdle();
      const through = await transcript(await loggedIn(await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile)));
      assert.equal(through.length, direct.length);
      for (let i = 0; i < direct.length; i++) assert.equal(through[i], direct[i], COMMANDS[i]);
      // The RSET undid the DELE, and no QUIT was sent: the server still holds every message.
      assert.match(direct.at(-3)!, new RegExp(`^STAT -> \\+OK ${alice.messages.length} `));
    });

    test('a client that mistypes its password twice on one connection still logs in: each try is a fresh backend connection', async () => {
      await target.whenIdle();
      const before = tap.connections;
      const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
      try {
        await client.readLine();
        for (const wrong of ['not-it', 'still-not-it']) {
          await client.command(`USER ${alice.user}`);
          assert.equal(await client.command(`PASS ${wrong}`, 15_000), '-ERR [AUTH] Authentication failed');
        }
        await loggedIn(client, true);
        assert.match(await client.command('STAT'), new RegExp(`^\\+OK ${alice.messages.length} `));
      } finally {
        client.destroy();
      }
      assert.ok(tap.connections - before >= 3, `${tap.connections - before} backend connections for three logins`);
    });
  });
}

describe('mailutils: what it adds and changes passes through as it is', { timeout: 120_000 }, () => {
  let server: LegacyServer;
  let tap: Tap;
  let proxy: TestProxy;
  let stopChain: () => Promise<void> = () => Promise.resolve();
  before(async () => {
    server = await startLegacyServer({ server: 'mailutils' });
    ({ tap, proxy, stop: stopChain } = await startChain(server.host, server.port));
  });
  after(async () => {
    await stopChain();
    await server?.stop();
  });

  /** LIST and UIDL of a session through popwarden. */
  const listAndUidl = async (): Promise<{ list: string; uidl: string }> => {
    await server.whenIdle();
    const client = await loggedIn(await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile));
    try {
      const list = (await client.multi('LIST')).body.toString('latin1');
      const uidl = (await client.multi('UIDL')).body.toString('latin1');
      return { list, uidl };
    } finally {
      client.destroy();
    }
  };

  test('a fresh mbox: the first session stamps headers, and LIST through popwarden shows the sizes with them from then on', async () => {
    await server.whenIdle();
    server.resetMaildrop();
    const first = await listAndUidl();
    const second = await listAndUidl();
    const size = (list: string): number => Number(/^1 (\d+)\r\n/.exec(list)?.[1]);
    assert.equal(size(first.list), alice.messages[0]!.bytes.length, 'the first session lists the message as delivered');
    assert.ok(size(second.list) > size(first.list), `LIST 1 grew by the stamped headers: ${size(first.list)} -> ${size(second.list)}`);
    // RETR agrees with LIST: the added headers are part of the message the client gets.
    const client = await loggedIn(await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile));
    try {
      const { body } = await client.multi('RETR 1');
      const unstuffed = body.subarray(0, body.length - 3).toString('latin1').replace(/^\.\./gm, '.');
      assert.equal(unstuffed.length, size(second.list));
      assert.match(unstuffed, /^X-UID: /m);
    } finally {
      client.destroy();
    }
  });

  test('UIDLs are the server\'s current ones in every session: popwarden keeps none', async () => {
    const uidlDirect = async (): Promise<string> => {
      await server.whenIdle();
      const client = await loggedIn(await RawClient.plain(server.host, server.port));
      try {
        return (await client.multi('UIDL')).body.toString('latin1');
      } finally {
        client.destroy();
      }
    };
    for (let mailbox = 0; mailbox < 2; mailbox++) {
      await server.whenIdle();
      server.resetMaildrop(); // a new mbox: a new UIDVALIDITY in every UIDL
      await uidlDirect(); // the first session stamps the mbox
      assert.equal((await listAndUidl()).uidl, await uidlDirect());
    }
  });

  test('a line mailutils would answer with several lines never reaches it: popwarden refuses it first', async () => {
    const client = await loggedIn(await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile));
    const from = tap.bytesClientToServer().length;
    try {
      // 253 octets reach mailutils, which answers once.
      assert.equal(await client.command(`XFOO ${'x'.repeat(246)}`), '-ERR Invalid command');
      assert.equal(await client.command(`XFOO ${'x'.repeat(600)}`), '-ERR Line too long');
    } finally {
      client.destroy();
    }
    const sent = tap.bytesClientToServer().subarray(from).toString('latin1');
    assert.equal(sent.split('\r\n').filter((l) => l.startsWith('XFOO')).length, 1);
  });
});
