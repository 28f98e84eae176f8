/**
 * Tests of the test harness itself, against the real Dovecot and the real clients: if these fail,
 * no interop test built on the harness can be trusted.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './ports.js';
import { dotStuff, sampleMaildrop, toLf } from './maildrop.js';
import { startDovecot } from './dovecot.js';
import type { Dovecot, DovecotProfile } from './dovecot.js';
import {
  assertSameMessages,
  connectPop,
  fetchWithCurl,
  fetchWithFetchmail,
  fetchWithOpenssl,
  fetchWithPoplib,
  opensslScript,
} from './clients.js';
import type { ClientAuth, PopConnection } from './clients.js';
import { startTap } from './tap.js';
import { legacyScript, startFakeBackend } from './fake-backend.js';
import { onCommand, startFaultProxy, type Fault, type FaultFired } from './fault-proxy.js';
import { spawnPopwarden } from './popwarden-process.js';

const { alice, bob } = sampleMaildrop();
const creds = { user: alice.user, pass: alice.pass };
const APOP_TS = /<[^<>@]+@[^<>]+>/;

describe('ports', () => {
  test('freePort returns a port nothing listens on and that can be bound', async () => {
    const port = await freePort();
    assert.ok(port > 0 && port < 65536);
    const srv = net.createServer();
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen({ host: '127.0.0.1', port }, resolve);
    });
    await new Promise<void>((resolve) => srv.close(() => resolve()));
  });
});

describe('sample maildrop', () => {
  test('is deterministic: pinned sizes and sha256 of every message', () => {
    const got = [...alice.messages, ...bob.messages].map((m) => `${m.user}/${m.n} ${m.bytes.length} ${m.sha256}`);
    assert.deepEqual(got, [
      'alice/1 456 21e7a5fafb5133d2191b08c78da605ca8cf4eacf8f7355558ac0a4090fc537ed',
      'alice/2 5132245 e8c9375944ef8fe2ae7081f701fbf9a4b06a282dc3d1517e3606021e68ab1b4a',
      'alice/3 2581 2508f18791a405d9c8abea725c7504ac0ee5cd3d5d6ad6e3b05a82a087af8d5c',
      'bob/1 356 3a79c58e098670bfc6876377099ce566fcadd4af4f316f929cef6d11d1de1e8f',
    ]);
    assert.equal(alice.pass, 's3cret!pw');
    assert.equal(bob.pass, 'bobpass');
  });

  test('every message uses CRLF only and carries the hazards it promises', () => {
    for (const m of [...alice.messages, ...bob.messages]) {
      assert.equal(m.bytes.toString('latin1').replace(/\r\n/g, '').includes('\n'), false, 'bare LF');
      assert.equal(m.bytes.toString('latin1').replace(/\r\n/g, '').includes('\r'), false, 'bare CR');
    }
    const body1 = alice.messages[0]!.bytes.toString('ascii');
    const lines1 = body1.slice(body1.indexOf('\r\n\r\n') + 4).split('\r\n');
    assert.ok(lines1[0]!.startsWith('.'), 'first body line starts with a dot');
    for (const l of ['.', '..', '.foo']) assert.ok(lines1.includes(l), `line ${JSON.stringify(l)}`);
    assert.ok(alice.messages[1]!.bytes.length > 5_000_000);
    const text3 = alice.messages[2]!.bytes.toString('utf8');
    assert.ok(text3.split('\r\n').some((l) => [...l].length === 2000), '2000-character line');
    assert.ok(/[^\x00-\x7f]/.test(text3), '8-bit body');
  });

  test('dotStuff doubles leading dots and terminates; toLf strips CRs', () => {
    const wire = dotStuff(Buffer.from('.a\r\nb\r\n.\r\n')).toString();
    assert.equal(wire, '..a\r\nb\r\n..\r\n.\r\n');
    assert.equal(toLf(Buffer.from('a\r\nb\r\n')).toString(), 'a\nb\n');
  });
});

/** Logs in with `mech` on a fresh connection; returns the final reply line. */
async function tryLogin(d: Dovecot, mech: Exclude<ClientAuth, 'auto'>): Promise<string> {
  const c = await connectPop({ host: d.host, port: d.port });
  try {
    if (mech === 'apop' && !APOP_TS.test(c.greeting)) {
      // No timestamp: a client cannot compute a digest; the server must still refuse APOP.
      return await c.command(`APOP alice ${'0'.repeat(32)}`);
    }
    return await c.login(alice.user, alice.pass, mech);
  } finally {
    c.close();
  }
}

const PROFILE_EXPECT: Record<
  Exclude<DovecotProfile, 'stls'>,
  { timestamp: boolean; sasl: string; works: Exclude<ClientAuth, 'auto'>[]; refused: Exclude<ClientAuth, 'auto'>[] }
> = {
  all: { timestamp: true, sasl: 'SASL PLAIN LOGIN CRAM-MD5', works: ['user', 'apop', 'plain', 'login', 'cram-md5'], refused: [] },
  'apop-only': { timestamp: true, sasl: 'SASL', works: ['apop'], refused: ['user', 'plain', 'login', 'cram-md5'] },
  'cram-md5-only': { timestamp: false, sasl: 'SASL CRAM-MD5', works: ['cram-md5'], refused: ['user', 'apop', 'plain', 'login'] },
  'user-only': { timestamp: false, sasl: 'SASL PLAIN LOGIN', works: ['user', 'plain', 'login'], refused: ['apop', 'cram-md5'] },
};

for (const [profile, want] of Object.entries(PROFILE_EXPECT) as [keyof typeof PROFILE_EXPECT, (typeof PROFILE_EXPECT)['all']][]) {
  describe(`dovecot profile ${profile}`, { timeout: 60_000 }, () => {
    let d: Dovecot;
    before(async () => {
      d = await startDovecot({ profile });
    });
    after(async () => {
      await d?.stop();
    });

    test('greets with or without an APOP timestamp and lists the expected SASL mechanisms', async () => {
      const c: PopConnection = await connectPop({ host: d.host, port: d.port });
      try {
        assert.match(c.greeting, /^\+OK /);
        assert.equal(APOP_TS.test(c.greeting), want.timestamp, c.greeting);
        const capa = await c.capa();
        assert.ok(capa.includes('UIDL') && capa.includes('TOP'), capa.join('|'));
        assert.deepEqual(
          capa.filter((l) => l.startsWith('SASL')),
          [want.sasl],
        );
        assert.ok(!capa.includes('STLS'));
      } finally {
        c.close();
      }
    });

    test(`alice logs in with ${want.works.join(', ')}${want.refused.length ? ` and not with ${want.refused.join(', ')}` : ''}`, async () => {
      for (const mech of want.works) assert.match(await tryLogin(d, mech), /^\+OK/, `${mech} should work`);
      for (const mech of want.refused) assert.match(await tryLogin(d, mech), /^-ERR/, `${mech} should be refused`);
      // Dovecot's log process writes the last login line a moment after the +OK.
      await d.whenLogged(() => (d.loginCount('alice') >= want.works.length ? true : undefined));
      assert.equal(d.loginCount('alice'), want.works.length);
      assert.equal(d.loginCount('bob'), 0);
      assert.equal(d.loginCount(), want.works.length);
    });
  });
}

describe('dovecot profile all: wrong password and stop()', { timeout: 60_000 }, () => {
  test('a wrong password is refused, not counted, and stop() removes everything', async () => {
    const d = await startDovecot({ profile: 'all' });
    try {
      const c = await connectPop({ host: d.host, port: d.port });
      assert.match(await c.login('alice', 'wrong', 'user'), /^-ERR \[AUTH\]/);
      c.close();
      assert.equal(d.loginCount(), 0);
    } finally {
      await d.stop();
    }
    assert.equal(fs.existsSync(d.dir), false);
    assert.throws(() => process.kill(d.pid, 0));
    await assert.rejects(connectPop({ host: d.host, port: d.port, timeoutMs: 2_000 }));
  });
});

describe('dovecot profile stls', { timeout: 60_000 }, () => {
  let d: Dovecot;
  before(async () => {
    d = await startDovecot({ profile: 'stls', pop3sPort: true });
  });
  after(async () => {
    await d?.stop();
  });

  test('has a CA file and an implicit-TLS port', () => {
    assert.ok(d.caFile && fs.existsSync(d.caFile));
    assert.ok(d.pop3sPort && d.pop3sPort !== d.port);
  });

  test('from 127.0.0.2 (not "secured"): STLS offered, plaintext auth refused until TLS', async () => {
    const c = await connectPop({ host: d.host, port: d.port, localAddress: '127.0.0.2' });
    try {
      const capa = await c.capa();
      assert.ok(capa.includes('STLS'), capa.join('|'));
      assert.ok(!capa.includes('USER'), capa.join('|'));
      assert.match(await c.command('USER alice'), /^-ERR .*[Pp]laintext/);
      assert.match(await c.stls(d.caFile), /^\+OK/);
      const capa2 = await c.capa();
      assert.ok(!capa2.includes('STLS') && capa2.includes('USER'), capa2.join('|'));
      assert.ok(capa2.includes('SASL PLAIN LOGIN CRAM-MD5'));
      assert.match(await c.login('alice', alice.pass, 'user'), /^\+OK/);
    } finally {
      c.close();
    }
  });

  test('implicit TLS port greets inside TLS with an APOP timestamp; an untrusted CA is refused', async () => {
    const c = await connectPop({ host: d.host, port: d.pop3sPort!, tls: true, caFile: d.caFile! });
    assert.match(c.greeting, APOP_TS);
    assert.match(await c.login('alice', alice.pass, 'apop'), /^\+OK/);
    c.close();
    await assert.rejects(connectPop({ host: d.host, port: d.pop3sPort!, tls: true }), /self-signed|certificate/i);
  });
});

describe('real clients fetch alice from Dovecot', { timeout: 240_000 }, () => {
  let plain: Dovecot;
  let tls: Dovecot;
  before(async () => {
    [plain, tls] = await Promise.all([startDovecot({ profile: 'all' }), startDovecot({ profile: 'stls', pop3sPort: true })]);
  });
  after(async () => {
    await Promise.all([plain?.stop(), tls?.stop()]);
  });

  test('poplib plain (auto = APOP), USER and CRAM-MD5; bob too', async () => {
    const before = plain.logins().length;
    for (const auth of ['auto', 'user', 'cram-md5'] as const) {
      const r = await fetchWithPoplib({ host: plain.host, port: plain.port, mode: 'plain', ...creds, auth });
      assert.ok(r.ok, r.stderr);
      assertSameMessages(r, alice.messages);
    }
    assert.deepEqual(
      plain.logins().slice(before).map((l) => l.method),
      ['APOP', 'PLAIN', 'CRAM-MD5'],
    );
    const b = await fetchWithPoplib({ host: plain.host, port: plain.port, mode: 'plain', user: 'bob', pass: bob.pass });
    assert.ok(b.ok, b.stderr);
    assertSameMessages(b, bob.messages);
  });

  test('curl plain (auto) and apop', async () => {
    for (const auth of ['auto', 'apop'] as const) {
      const r = await fetchWithCurl({ host: plain.host, port: plain.port, mode: 'plain', ...creds, auth });
      assert.ok(r.ok, r.stderr);
      assertSameMessages(r, alice.messages);
    }
  });

  test('curl fetches just message 3 into a file; fetchmail fills an outDir', async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'popwarden-harness-out-'));
    try {
      const r = await fetchWithCurl({ host: plain.host, port: plain.port, mode: 'plain', ...creds, messages: [3], outDir: out });
      assert.ok(r.ok, r.stderr);
      assert.deepEqual(fs.readdirSync(out), ['003.eml']);
      assert.ok(fs.readFileSync(path.join(out, '003.eml')).equals(alice.messages[2]!.bytes));
      const f = await fetchWithFetchmail({ host: plain.host, port: plain.port, mode: 'plain', ...creds, outDir: out });
      assert.ok(f.ok, f.stderr);
      assert.deepEqual(fs.readdirSync(out).sort(), ['001.eml', '002.eml', '003.eml']);
      assertSameMessages(f, alice.messages);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  });

  test('fetchmail plain (auto) delivers LF-converted messages that match', async () => {
    const r = await fetchWithFetchmail({ host: plain.host, port: plain.port, mode: 'plain', ...creds });
    assert.ok(r.ok, r.stderr);
    assert.equal(r.lineEnding, 'lf');
    assertSameMessages(r, alice.messages);
  });

  test('poplib, curl, fetchmail and openssl over STLS', async () => {
    const o = { host: tls.host, port: tls.port, mode: 'stls' as const, caFile: tls.caFile!, ...creds };
    for (const r of [await fetchWithPoplib(o), await fetchWithCurl(o), await fetchWithFetchmail(o), await fetchWithOpenssl(o)]) {
      assert.ok(r.ok, `${r.client}: ${r.stderr}`);
      assertSameMessages(r, alice.messages);
    }
  });

  test('poplib, curl, fetchmail and openssl over implicit TLS', async () => {
    const o = { host: tls.host, port: tls.pop3sPort!, mode: 'implicit' as const, caFile: tls.caFile!, ...creds };
    for (const r of [
      await fetchWithPoplib(o),
      await fetchWithCurl(o),
      await fetchWithFetchmail(o),
      await fetchWithOpenssl({ ...o, auth: 'apop' }),
    ]) {
      assert.ok(r.ok, `${r.client}: ${r.stderr}`);
      assertSameMessages(r, alice.messages);
    }
  });

  test('every client refuses a server whose certificate it does not trust', async () => {
    const o = { host: tls.host, port: tls.pop3sPort!, mode: 'implicit' as const, ...creds, timeoutMs: 30_000 };
    const before = tls.loginCount();
    for (const r of [await fetchWithPoplib(o), await fetchWithCurl(o), await fetchWithFetchmail(o), await fetchWithOpenssl(o)]) {
      assert.equal(r.ok, false, `${r.client} accepted an untrusted certificate`);
      assert.equal(r.messages.length, 0);
    }
    assert.equal(tls.loginCount(), before, 'no login reached Dovecot');
  });

  test('openssl script returns a transcript', async () => {
    const r = await opensslScript({ host: tls.host, port: tls.port, mode: 'stls', caFile: tls.caFile! }, [
      'CAPA',
      `USER ${alice.user}`,
      { send: `PASS ${alice.pass}`, shown: 'PASS ********' },
      'UIDL',
      'QUIT',
    ]);
    assert.ok(r.ok, r.stderr);
    assert.equal(r.replies.length, 5);
    assert.match(r.transcript, /^C: CAPA$/m);
    assert.match(r.transcript, /^C: PASS \*{8}$/m);
    assert.doesNotMatch(r.transcript, /s3cret/);
    assert.deepEqual(
      r.replies[3]!.body!.toString().trim().split('\r\n'),
      alice.messages.map((m) => `${m.n} ${m.uidl}`),
    );
  });

  test('assertSameMessages fails on one changed byte, a missing message and the wrong line ends', () => {
    const msgs = alice.messages.map((m) => Buffer.from(m.bytes));
    assertSameMessages(msgs, alice.messages);
    const first = msgs[0]!;
    first[first.length - 3] = first[first.length - 3]! ^ 1;
    assert.throws(() => assertSameMessages(msgs, alice.messages), /message 1 differs/);
    assert.throws(() => assertSameMessages(msgs.slice(1), alice.messages), /got 2 messages/);
    assert.throws(() => assertSameMessages(alice.messages.map((m) => m.bytes), alice.messages, { lineEnding: 'lf' }));
  });
});

// Server hooks in the shape every describe here and in e2e/ uses: the describe owns the real
// server its tests share.
describe('tap', { timeout: 60_000 }, () => {
  let d: Dovecot;
  before(async () => {
    d = await startDovecot({ profile: 'all' });
  });
  after(async () => {
    await d?.stop();
  });

  test('records both directions: USER/PASS shows the password, APOP does not', async () => {
    const tap = await startTap(d.host, d.port);
    try {
      const r = await fetchWithPoplib({ host: tap.host, port: tap.port, mode: 'plain', ...creds, auth: 'user' });
      assert.ok(r.ok, r.stderr);
      assertSameMessages(r, alice.messages);
      assert.equal(tap.connections, 1);
      assert.ok(tap.bytesClientToServer().includes(`PASS ${alice.pass}\r\n`));
      assert.ok(tap.bytesServerToClient().includes(alice.messages[1]!.bytes.subarray(0, 4096)));
    } finally {
      await tap.stop();
    }
    const tap2 = await startTap(d.host, d.port);
    try {
      const r = await fetchWithPoplib({ host: tap2.host, port: tap2.port, mode: 'plain', ...creds, auth: 'apop' });
      assert.ok(r.ok, r.stderr);
      assert.match(tap2.bytesClientToServer().toString(), /^APOP alice [0-9a-f]{32}\r\n/m);
      assert.equal(tap2.bytesClientToServer().includes(alice.pass), false);
    } finally {
      await tap2.stop();
    }
  });
});

describe('fake backend', { timeout: 60_000 }, () => {
  test('legacyScript serves RETR that poplib fetches byte for byte (USER/PASS and APOP)', async () => {
    const fb = await startFakeBackend(legacyScript({ apop: true }));
    try {
      const r1 = await fetchWithPoplib({ host: fb.host, port: fb.port, mode: 'plain', ...creds, auth: 'user' });
      assert.ok(r1.ok, r1.stderr);
      assertSameMessages(r1, alice.messages);
      const r2 = await fetchWithPoplib({ host: fb.host, port: fb.port, mode: 'plain', ...creds });
      assert.ok(r2.ok, r2.stderr);
      assertSameMessages(r2, alice.messages);
      const [c1, c2] = fb.connections();
      assert.deepEqual(c1!.lines().slice(0, 3), ['USER alice', `PASS ${alice.pass}`, 'STAT']);
      assert.match(c2!.lines()[0]!, /^APOP alice [0-9a-f]{32}$/);
      assert.ok(c2!.received().toString().includes('RETR 2\r\n'));
    } finally {
      await fb.stop();
    }
  });

  test('curl and fetchmail fetch from legacyScript too (dot-stuffing both ways)', async () => {
    const fb = await startFakeBackend(legacyScript({ cramMd5: true }));
    try {
      const r = await fetchWithCurl({ host: fb.host, port: fb.port, mode: 'plain', ...creds });
      assert.ok(r.ok, r.stderr);
      assertSameMessages(r, alice.messages);
      const f = await fetchWithFetchmail({ host: fb.host, port: fb.port, mode: 'plain', ...creds });
      assert.ok(f.ok, f.stderr);
      assertSameMessages(f, alice.messages);
      assert.ok(fb.connections().every((c) => c.lines().some((l) => l === 'AUTH CRAM-MD5')));
    } finally {
      await fb.stop();
    }
  });

  for (const how of ['end', 'destroy'] as const) {
    test(`a RETR cut after 1000 body bytes (${how === 'end' ? 'FIN' : 'RST'}) makes poplib fail`, async () => {
      const fb = await startFakeBackend(legacyScript({ cutRetr: { message: 2, afterBytes: 1000, how } }));
      try {
        const r = await fetchWithPoplib({ host: fb.host, port: fb.port, mode: 'plain', ...creds, auth: 'user' });
        assert.equal(r.ok, false);
        assert.equal(r.messages.length, 1, 'message 1 arrived, message 2 did not');
        assert.match(r.stderr, how === 'end' ? /EOF/ : /EOF|reset/i);
      } finally {
        await fb.stop();
      }
    });
  }

  test('poplib notices a message cut short by an early terminator (octet count)', async () => {
    const fb = await startFakeBackend(
      legacyScript({
        onCommand: ({ conn, verb, args, state }) => {
          if (state !== 'TRANSACTION' || verb !== 'RETR' || args[0] !== '1') return false;
          const m = alice.messages[0]!.bytes;
          void conn.write(Buffer.concat([Buffer.from(`+OK ${m.length} octets\r\n`), dotStuff(m.subarray(0, 100))]));
          return true;
        },
      }),
    );
    try {
      const r = await fetchWithPoplib({ host: fb.host, port: fb.port, mode: 'plain', ...creds, auth: 'user' });
      assert.equal(r.ok, false);
      assert.match(r.stderr, /announced 456 octets/);
    } finally {
      await fb.stop();
    }
  });

  test('custom scripts: readLine, received, destroy resets the peer', async () => {
    const fb = await startFakeBackend(async (conn) => {
      await conn.write('+OK hi\r\n');
      const l = await conn.readLine();
      await conn.write(`-ERR you said ${l}\r\n`);
      await conn.readLine();
      conn.destroy();
    });
    try {
      const c = await connectPop({ host: fb.host, port: fb.port });
      assert.equal(c.greeting, '+OK hi');
      assert.equal(await c.command('NOOP'), '-ERR you said NOOP');
      c.write('BYE\r\n');
      await assert.rejects(c.readLine(5_000), /ECONNRESET/);
      const [conn] = fb.connections();
      await conn!.done;
      assert.equal(conn!.scriptError, undefined);
      assert.equal(conn!.received().toString(), 'NOOP\r\nBYE\r\n');
      await conn!.whenClosed;
      assert.equal(conn!.closed, true);
    } finally {
      await fb.stop();
    }
  });

  test('legacyScript with CRAM-MD5 and CAPA -ERR', async () => {
    const fb = await startFakeBackend(legacyScript({ cramMd5: true, userPass: false }));
    const fb2 = await startFakeBackend(legacyScript({ capa: false }));
    try {
      const c = await connectPop({ host: fb.host, port: fb.port });
      assert.doesNotMatch(c.greeting, APOP_TS);
      assert.deepEqual(await c.capa(), ['CAPA', 'TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'SASL CRAM-MD5']);
      assert.match(await c.command('USER alice'), /^-ERR/);
      assert.match(await c.login('alice', 'nope', 'cram-md5'), /^-ERR \[AUTH\]/);
      assert.match(await c.login('alice', alice.pass, 'cram-md5'), /^\+OK/);
      assert.equal(await c.command('STAT'), `+OK 3 ${alice.messages.reduce((s, m) => s + m.bytes.length, 0)}`);
      const top = await c.multi('TOP 1 1');
      assert.ok(top.body.toString().endsWith('\r\n\r\n.this first body line starts with a dot\r\n'));
      c.close();
      const c2 = await connectPop({ host: fb2.host, port: fb2.port });
      assert.deepEqual(await c2.capa(), []);
      c2.close();
    } finally {
      await Promise.all([fb.stop(), fb2.stop()]);
    }
  });
});

describe('fault proxy', { timeout: 30_000 }, () => {
  /** A server that greets, answers "CMD" with a 16-byte reply, and records every line it gets. */
  let server: net.Server;
  let port = 0;
  const received: string[] = [];
  let accepted = 0;
  before(async () => {
    server = net.createServer((socket) => {
      accepted += 1;
      socket.on('error', () => undefined);
      socket.write('+OK hello\r\n');
      let text = '';
      socket.on('data', (chunk: Buffer) => {
        text += chunk.toString('latin1');
        for (let lf = text.indexOf('\n'); lf !== -1; lf = text.indexOf('\n')) {
          const line = text.slice(0, lf).replace(/\r$/, '');
          text = text.slice(lf + 1);
          received.push(line);
          if (line === 'CMD') socket.write('+OK 0123456789\r\n');
        }
      });
    });
    port = await new Promise<number>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, () => resolve((server.address() as net.AddressInfo).port)));
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  /** Connects through `proxy`, reads the greeting, sends CMD; what came back (after the greeting) and how it ended. */
  async function throughProxy(fault: Fault): Promise<{ reply: string; ended: 'end' | 'reset' | 'open'; fired: FaultFired }> {
    const proxy = await startFaultProxy({ host: '127.0.0.1', port });
    try {
      const fired = proxy.armNext(fault);
      const socket = net.connect({ host: '127.0.0.1', port: proxy.port });
      let all = '';
      let ended: 'end' | 'reset' | 'open' = 'open';
      const finished = new Promise<void>((resolve) => {
        socket.on('data', (chunk: Buffer) => {
          all += chunk.toString('latin1');
          if (all === '+OK hello\r\n') socket.write('CMD\r\n');
          if (all.endsWith('0123456789\r\n')) resolve();
        });
        socket.on('end', () => ((ended = 'end'), resolve()));
        socket.on('error', () => ((ended = 'reset'), resolve()));
      });
      const report = await fired;
      // A stall or a swallowed command ends nothing: the fault's own report is the event to wait for.
      if (fault.kind !== 'stall' && fault.kind !== 'never-answer') await finished;
      socket.destroy();
      return { reply: all, ended, fired: report };
    } finally {
      await proxy.stop();
    }
  }

  const onCmd = onCommand('CMD');
  test('truncate passes exactly N reply bytes, then ends', async () => {
    const { reply, ended } = await throughProxy({ kind: 'truncate', trigger: onCmd, afterBytes: 6 });
    assert.equal(reply, '+OK hello\r\n+OK 01');
    assert.equal(ended, 'end');
  });
  test('corrupt changes the reply byte at N, and only it', async () => {
    const { reply } = await throughProxy({ kind: 'corrupt', trigger: onCmd, afterBytes: 0 });
    assert.equal(reply, '+OK hello\r\n*OK 0123456789\r\n');
  });
  test('delay holds the reply and then passes it whole', async () => {
    const { reply, fired } = await throughProxy({ kind: 'delay', trigger: onCmd, delayMs: 50 });
    assert.equal(reply, '+OK hello\r\n+OK 0123456789\r\n');
    assert.equal(fired.kind, 'delay');
  });
  test('reset sends an RST: the client reads ECONNRESET', async () => {
    const { reply, ended } = await throughProxy({ kind: 'reset', trigger: onCmd, afterBytes: 0 });
    assert.equal(reply, '+OK hello\r\n');
    assert.equal(ended, 'reset');
  });
  test('reset after N bytes: the N bytes, then the end (Linux reports an RST after unread data as an end)', async () => {
    const { reply, ended } = await throughProxy({ kind: 'reset', trigger: onCmd, afterBytes: 3 });
    assert.equal(reply, '+OK hello\r\n+OK');
    assert.notEqual(ended, 'open');
  });
  test('half-close ends the reply towards the client', async () => {
    const { reply, ended } = await throughProxy({ kind: 'half-close', trigger: onCmd, afterBytes: 4 });
    assert.equal(reply, '+OK hello\r\n+OK ');
    assert.equal(ended, 'end');
  });
  test('stall: the server gets the command, its reply stops at N bytes', async () => {
    const before = received.length;
    const { fired } = await throughProxy({ kind: 'stall', trigger: onCmd, afterBytes: 2 });
    assert.equal(fired.passedBytes, 2);
    assert.deepEqual(received.slice(before), ['CMD']);
  });
  test('never-answer with a trigger: the server never gets the command', async () => {
    const before = received.length;
    const { reply } = await throughProxy({ kind: 'never-answer', trigger: onCmd });
    assert.equal(reply, '+OK hello\r\n');
    // The proxy would have forwarded CMD before reporting; nothing reached the server.
    assert.deepEqual(received.slice(before), []);
  });
  test('never-answer without a trigger: accepted, and no connection to the server at all', async () => {
    const before = accepted;
    const { reply } = await throughProxy({ kind: 'never-answer' });
    assert.equal(reply, '');
    assert.equal(accepted, before);
  });
});

describe('popwarden process', { timeout: 60_000 }, () => {
  test('crashReport names an unhandled rejection and the death it causes under --unhandled-rejections=strict', async () => {
    // A defect planted for this test only: SIGUSR2 makes the process reject a promise nobody handles.
    const plant = "data:text/javascript,process.on('SIGUSR2',()=>{Promise.reject(new Error('planted defect'))})";
    const pw = await spawnPopwarden({ backend: '127.0.0.1:9' }, { nodeArgs: ['--import', plant] });
    assert.equal(pw.crashReport(), undefined);
    process.kill(pw.pid, 'SIGUSR2');
    await pw.waitForExit();
    const report = pw.crashReport() ?? '';
    assert.match(report, /planted defect/);
    assert.match(report, /the process exited with 1/);
  });
});
