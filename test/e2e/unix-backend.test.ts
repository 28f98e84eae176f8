/**
 * `backend: unix:` (issue 12.2): a real legacy server socket-activated on a UNIX socket, one
 * process per connection, as contrib/systemd/popwarden-legacy-pop3.socket sets it up, with
 * `systemd-socket-activate --accept --inetd` standing in for systemd (test/harness/socket-activated.ts).
 * Messages fetched through popwarden are byte-identical to the server's own; popa3d's USER/PASS is
 * allowed because nobody but root may change the socket's directory, and refused (PASS never
 * sent) when others may; and the shipped units pass `systemd-analyze verify`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { assertSameMessages, fetchWithPoplib } from '../harness/clients.js';
import { PEERS_DIR, settledMessages, startLegacyServer, type LegacyOptions, type LegacyServer } from '../harness/legacy.js';
import { sampleMaildrop } from '../harness/maildrop.js';
import { startTestProxy, type TestProxy } from '../harness/popwarden.js';
import { RawClient } from '../harness/raw-client.js';
import { startSocketActivated, type SocketActivated } from '../harness/socket-activated.js';

const { alice } = sampleMaildrop();
const ROOT = resolve(import.meta.dirname, '../..');

const CASES: readonly { opts: LegacyOptions; mechanism: string }[] = [
  { opts: { server: 'popa3d' }, mechanism: 'user' },
  { opts: { server: 'mailutils' }, mechanism: 'apop' },
];

for (const c of CASES) {
  describe(`unix: ${c.opts.server}, socket-activated per connection`, { timeout: 120_000 }, () => {
    let server: LegacyServer;
    let activated: SocketActivated;
    let proxy: TestProxy;
    let reference: Buffer[];

    before(async () => {
      server = await startLegacyServer(c.opts);
      reference = await settledMessages(server, alice);
      activated = await startSocketActivated(server.exec);
      proxy = await startTestProxy({ backend: { address: { kind: 'unix', path: activated.path }, trustLoopback: undefined } });
    });
    after(async () => {
      await proxy?.stop();
      await activated?.stop();
      await server?.stop();
    });

    test(`poplib over STLS: popwarden logs in with ${c.mechanism}, every message byte-identical to the server's own`, async () => {
      const r = await fetchWithPoplib({
        host: proxy.host, port: proxy.stlsPort, mode: 'stls', user: alice.user, pass: alice.pass, caFile: proxy.caFile, auth: 'user', timeoutMs: 60_000,
      });
      assert.ok(r.ok, `${r.stderr.slice(-1_500)}\n${proxy.logText().slice(-1_500)}`);
      assertSameMessages(r, reference);
      assert.equal(proxy.logs().filter((l) => l['event'] === 'login').at(-1)?.['backendMechanism'], c.mechanism);
    });
  });
}

describe('unix: the trust rule for cleartext logins', { timeout: 120_000 }, () => {
  let server: LegacyServer;
  let activated: SocketActivated;
  before(async () => {
    server = await startLegacyServer({ server: 'popa3d' });
    activated = await startSocketActivated(server.exec);
  });
  after(async () => {
    chmodSync(activated.dir, 0o700);
    await activated?.stop();
    await server?.stop();
  });

  const loginThrough = async (proxy: TestProxy): Promise<string> => {
    const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
    try {
      await client.readLine();
      await client.command(`USER ${alice.user}`);
      return await client.command(`PASS ${alice.pass}`, 15_000);
    } finally {
      client.destroy();
    }
  };

  for (const [mode, label] of [
    [0o777, 'writable by others'],
    [0o1777, 'writable by others, even sticky (the socket vanishes when its server stops, and the name is free)'],
  ] as const) {
    test(`a socket directory ${label}: popa3d's USER/PASS is refused, the reason names the directory`, async () => {
      chmodSync(activated.dir, mode);
      const proxy = await startTestProxy({ backend: { address: { kind: 'unix', path: activated.path }, trustLoopback: undefined } });
      try {
        assert.match(await loginThrough(proxy), /^-ERR \[SYS\/TEMP\] /);
        const refusal = await proxy.waitForLog((l) => l['msg'] === 'refusing to log in to the backend');
        assert.match(String(refusal['reason']), new RegExp(`the socket is not trusted: ${activated.dir} is writable by group or others`));
      } finally {
        chmodSync(activated.dir, 0o700);
        await proxy.stop();
      }
    });
  }

  test('backend_trust_loopback: false refuses it even in a private directory; true allows it anywhere', async () => {
    for (const [trust, expected] of [[false, /^-ERR/], [true, /^\+OK/]] as const) {
      const proxy = await startTestProxy({ backend: { address: { kind: 'unix', path: activated.path }, trustLoopback: trust } });
      try {
        assert.match(await loginThrough(proxy), expected);
      } finally {
        await proxy.stop();
      }
    }
  });
});

describe('contrib/systemd: the shipped socket unit and its template service', () => {
  const units = ['popwarden-legacy-pop3.socket', 'popwarden-legacy-pop3@.service'];
  const dir = mkdtempSync(join(tmpdir(), 'popwarden-units-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** The units as shipped, except ExecStart naming popa3d where the test machine has it. */
  const copyUnits = (execStart: string): string[] => {
    for (const unit of units) copyFileSync(join(ROOT, 'contrib/systemd', unit), join(dir, unit));
    const service = join(dir, units[1]!);
    writeFileSync(service, readFileSync(service, 'utf8').replace(/^ExecStart=\/usr\/sbin\/popa3d$/m, `ExecStart=${execStart}`));
    return units.map((unit) => join(dir, unit));
  };
  const verify = (paths: string[]) => spawnSync('systemd-analyze', ['verify', '--man=no', ...paths], { encoding: 'utf8' });

  test('systemd-analyze verify accepts them', () => {
    const result = verify(copyUnits(join(PEERS_DIR, 'popa3d/usr/sbin/popa3d')));
    assert.equal(result.status, 0, result.stderr + result.stdout);
    assert.equal(result.stderr.trim(), '');
  });

  test('and would catch a broken one (a program that does not exist)', () => {
    const result = verify(copyUnits('/usr/sbin/no-such-pop3-server'));
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /no-such-pop3-server is not executable/);
  });
});
