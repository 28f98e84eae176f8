/**
 * No Nagle stall between popwarden and its clients (issue 10): fetchmail fetching small messages
 * waited ~44 ms for each one, because the status line and the body left as two small writes and
 * the second sat in Nagle's buffer until the client's delayed ACK. Guarded here without timing:
 * the kernel must report TCP_NODELAY on every accepted client socket (both listener kinds, and
 * after STLS), and every reply that fits in a TLS record must leave as exactly one record,
 * counted on a TCP tap between a client and popwarden. Against a real Dovecot. The backend side
 * too: each relayed command reaches Dovecot in one write (bench/README.md, "One command on one
 * session": two reads and two writes per command are all the system calls a relay needs).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Socket } from 'node:net';
import path from 'node:path';
import { assertSameMessages, fetchWithFetchmail } from '../harness/clients.js';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';
import { sampleMaildrop, writeMaildir, type SampleMessage } from '../harness/maildrop.js';
import { startTestProxy, type TestProxy } from '../harness/popwarden.js';
import { RawClient } from '../harness/raw-client.js';
import { startTap, type Tap } from '../harness/tap.js';
import { tcpNoDelay, tlsRecords } from '../harness/wire.js';

const { alice, bob } = sampleMaildrop();

/** 50 small messages for bob, with dot lines where a relay could trip: first, last, alone. */
function smallMessages(): SampleMessage[] {
  return Array.from({ length: 50 }, (_, i): SampleMessage => {
    const n = i + 2; // after bob's own message 1
    const filler = Array.from({ length: 1 + (i % 7) * 5 }, (_, k) => `line ${k} of message ${n}: ${'x'.repeat((i * 13 + k) % 60)}`);
    const body = [i % 3 === 0 ? '.starts with a dot' : 'plain first line', ...filler, '.', '..', i % 2 === 0 ? '.' : 'last line'];
    const bytes = Buffer.from(
      [
        'From: Popwarden Sample <postmaster@popwarden.test>',
        `To: bob <bob@popwarden.test>`,
        `Subject: small message ${n}`,
        `Date: Tue, 02 Jan 2024 10:${String(i).padStart(2, '0')}:00 +0000`,
        `Message-ID: <small-bob-${n}@popwarden.test>`,
        '',
        ...body,
      ].join('\r\n') + '\r\n',
      'ascii',
    );
    return {
      user: bob.user,
      n,
      bytes,
      sha256: createHash('sha256').update(bytes).digest('hex'),
      messageId: `<small-bob-${n}@popwarden.test>`,
      uidl: `${1704187000 + n}.M${n}P7.popwarden`,
    };
  });
}

describe('client writes: TCP_NODELAY and one TLS record per small reply', { timeout: 180_000 }, () => {
  let dovecot: Dovecot;
  let proxy: TestProxy;
  const taps: Tap[] = [];
  const extra = smallMessages();

  before(async () => {
    dovecot = await startDovecot({ profile: 'all' });
    writeMaildir(path.join(dovecot.dir, 'mail', bob.user), { ...bob, messages: extra }, { chown: true });
    proxy = await startTestProxy({ backend: { host: dovecot.host, port: dovecot.port } });
  });
  after(async () => {
    for (const tap of taps) await tap.stop();
    await proxy?.stop();
    await dovecot?.stop();
  });

  /** The kernel's TCP_NODELAY on popwarden's end of `client`'s connection to `port`. */
  const serverNoDelay = (client: RawClient, port: number): Promise<boolean> =>
    tcpNoDelay(process.pid, port, client.socket.localPort!);

  test('every accepted client socket has TCP_NODELAY: implicit TLS, STLS, and after STLS', async () => {
    const implicit = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
    await implicit.readLine();
    assert.equal(await serverNoDelay(implicit, proxy.tlsPort), true, 'implicit-TLS listener');
    implicit.destroy();

    const plain = await RawClient.plain(proxy.host, proxy.stlsPort);
    await plain.readLine();
    assert.equal(await serverNoDelay(plain, proxy.stlsPort), true, 'STLS listener, in clear');
    assert.match(await plain.command('STLS'), /^\+OK/);
    await plain.upgrade(proxy.caFile);
    assert.match(await plain.command('CAPA'), /^\+OK/);
    await plain.readUntilTerminator();
    assert.equal(await serverNoDelay(plain, proxy.stlsPort), true, 'STLS listener, inside TLS');
    plain.destroy();
  });

  /**
   * A client connected through a recording tap, and a counter of the TLS records popwarden sent
   * while one exchange ran (the client has read the whole reply when the exchange resolves, so
   * every record of it has passed the tap, and nothing else is in flight).
   */
  async function tappedClient(kind: 'implicit' | 'stls'): Promise<{
    client: RawClient;
    recordsDuring: (exchange: () => Promise<unknown>) => Promise<number>;
  }> {
    const tap = await startTap(proxy.host, kind === 'implicit' ? proxy.tlsPort : proxy.stlsPort);
    taps.push(tap);
    let tlsStart = 0;
    let client: RawClient;
    if (kind === 'implicit') {
      client = await RawClient.tls(tap.host, tap.port, proxy.caFile);
    } else {
      client = await RawClient.plain(tap.host, tap.port);
      await client.readLine();
      assert.match(await client.command('STLS'), /^\+OK/);
      tlsStart = tap.bytesServerToClient().length;
      await client.upgrade(proxy.caFile);
    }
    const records = (): number => tlsRecords(tap.bytesServerToClient().subarray(tlsStart)).length;
    const recordsDuring = async (exchange: () => Promise<unknown>): Promise<number> => {
      const before = records();
      await exchange();
      return records() - before;
    };
    return { client, recordsDuring };
  }

  for (const kind of ['implicit', 'stls'] as const) {
    test(`each small reply leaves as one TLS record (${kind})`, async () => {
      const { client, recordsDuring } = await tappedClient(kind);
      const multi = async (command: string): Promise<void> => {
        const { status } = await client.multi(command);
        assert.match(status, /^\+OK/, command);
      };
      // TLS 1.3 session tickets leave with popwarden's first reply inside TLS: not counted.
      if (kind === 'implicit') await client.readLine();
      else await multi('CAPA');
      assert.equal(await recordsDuring(() => multi('CAPA')), 1, 'CAPA before login');
      assert.equal(await recordsDuring(() => client.command(`USER ${alice.user}`)), 1, 'USER');
      assert.equal(await recordsDuring(() => client.command(`PASS ${alice.pass}`)), 1, 'PASS');
      assert.equal(await recordsDuring(() => multi('CAPA')), 1, 'CAPA after login');
      assert.equal(await recordsDuring(() => multi('LIST')), 1, 'LIST');
      assert.equal(await recordsDuring(() => multi('UIDL')), 1, 'UIDL');
      assert.equal(await recordsDuring(() => multi('TOP 1 0')), 1, 'TOP');
      assert.equal(await recordsDuring(() => multi('RETR 1')), 1, 'RETR of a small message');
      assert.equal(await recordsDuring(() => multi('RETR 3')), 1, 'RETR of a message with a 2,000-character line');
      assert.equal(await recordsDuring(() => client.command('RETR 9')), 1, '-ERR to RETR');
      assert.equal(await recordsDuring(() => client.command('NOOP')), 1, 'NOOP');
      client.destroy();
    });
  }

  test('replies to commands pipelined in one write leave together, as one TLS record', async () => {
    const { client, recordsDuring } = await tappedClient('implicit');
    await client.readLine(); // with the session tickets
    const records = await recordsDuring(async () => {
      client.write(`CAPA\r\nUSER ${alice.user}\r\nCAPA\r\n`);
      await client.readUntilTerminator();
      assert.match(await client.readLine(), /^\+OK/);
      await client.readUntilTerminator();
    });
    assert.equal(records, 1);
    client.destroy();
  });

  test('SASL challenges leave as one TLS record each', async () => {
    const { client, recordsDuring } = await tappedClient('implicit');
    await client.readLine(); // with the session tickets
    assert.equal(await recordsDuring(() => client.command('AUTH LOGIN')), 1, 'username prompt');
    assert.equal(await recordsDuring(() => client.command(Buffer.from(alice.user).toString('base64'))), 1, 'password prompt');
    assert.equal(await recordsDuring(() => client.command(Buffer.from(alice.pass).toString('base64'))), 1, 'login reply');
    client.destroy();
  });

  /**
   * Counts socket writes to the backend's port in this process (popwarden runs in it): a write
   * per command line is all a relay needs, and each further write is a system call and a segment.
   */
  function backendWrites(port: number): { during: (exchange: () => Promise<unknown>) => Promise<number>; restore: () => void } {
    const original = Socket.prototype.write;
    let count = 0;
    Socket.prototype.write = function (this: Socket, ...args: Parameters<Socket['write']>) {
      if (this.remotePort === port) count += 1;
      return original.apply(this, args);
    } as Socket['write'];
    return {
      during: async (exchange) => {
        const before = count;
        await exchange();
        return count - before;
      },
      // Socket.prototype had no write of its own (it inherits Writable's): removing ours restores it.
      restore: () => void delete (Socket.prototype as { write?: unknown }).write,
    };
  }

  test('each relayed command reaches the backend in one write', async () => {
    assert.equal(Object.hasOwn(Socket.prototype, 'write'), false, 'Socket.prototype.write is inherited');
    const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
    await client.readLine();
    await client.command(`USER ${alice.user}`);
    assert.match(await client.command(`PASS ${alice.pass}`), /^\+OK/);
    const writes = backendWrites(dovecot.port);
    try {
      const multi = async (command: string): Promise<void> => void assert.match((await client.multi(command)).status, /^\+OK/, command);
      assert.equal(await writes.during(() => client.command('NOOP')), 1, 'NOOP');
      assert.equal(await writes.during(() => client.command('STAT')), 1, 'STAT');
      assert.equal(await writes.during(() => multi('LIST')), 1, 'LIST');
      assert.equal(await writes.during(() => multi('UIDL')), 1, 'UIDL');
      assert.equal(await writes.during(() => multi('CAPA')), 1, 'CAPA after login');
      assert.equal(await writes.during(() => multi('TOP 1 0')), 1, 'TOP');
      assert.equal(await writes.during(() => multi('RETR 1')), 1, 'RETR');
      assert.equal(await writes.during(() => client.command('RETR 9')), 1, '-ERR to RETR');
      assert.equal(await writes.during(() => client.command('noop')), 1, 'a command rebuilt before it is relayed');
    } finally {
      writes.restore();
    }
    client.destroy();
  });

  test('fetchmail fetches 51 small messages byte-identical through popwarden', async () => {
    const result = await fetchWithFetchmail({
      host: proxy.host,
      port: proxy.tlsPort,
      mode: 'implicit',
      user: bob.user,
      pass: bob.pass,
      caFile: proxy.caFile,
      timeoutMs: 120_000,
    });
    assert.ok(result.ok, `fetchmail failed: exit ${result.exitCode}\n${result.stderr.slice(-2_000)}`);
    assertSameMessages(result, [...bob.messages, ...extra]);
  });
});
