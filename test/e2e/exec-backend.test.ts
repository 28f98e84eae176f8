/**
 * `backend: exec:` against real inetd servers (issue 12.1): popa3d and GNU mailutils pop3d
 * (--inetd) started by popwarden itself for each session, the connection as their stdin and
 * stdout, in the harness's namespaces (test/harness/legacy.ts, LegacyServer.exec). Every message
 * fetched through popwarden is byte-identical to what the same server serves directly; DELE then
 * QUIT deletes exactly those messages, DELE then a dropped client nothing; and once the sessions
 * are over popwarden has no child left and never a zombie (counted in /proc).
 *
 * popa3d only knows USER/PASS: popwarden sends it the password because the link is its own
 * child's socket, which nobody else can reach (backend_trust_loopback left at its default).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { assertSameMessages, fetchWithCurl, fetchWithPoplib, type ClientOptions, type ClientResult } from '../harness/clients.js';
import { settledMessages, startLegacyServer, type LegacyOptions, type LegacyServer } from '../harness/legacy.js';
import { dotStuff, sampleMaildrop } from '../harness/maildrop.js';
import { backendProgramsExited, startTestProxy, type TestProxy } from '../harness/popwarden.js';
import { childrenOf } from '../harness/proc.js';
import { RawClient } from '../harness/raw-client.js';

const { alice } = sampleMaildrop();
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const why = (r: ClientResult): string => `exit ${r.exitCode}\n${r.stderr.slice(-1_500)}\n${r.transcript.slice(-1_500)}`;

function messageId(bytes: Buffer): string {
  const header = bytes.subarray(0, bytes.indexOf('\r\n\r\n')).toString('latin1');
  return /^Message-ID: (.*)$/im.exec(header)?.[1]?.trim() ?? '(none)';
}

/** Children of this process (popwarden runs in it) other than the harness's own servers, and every zombie. */
function leftovers(harnessPids: readonly number[]): string[] {
  return childrenOf(process.pid)
    .filter((p) => p.state === 'Z' || !harnessPids.includes(p.pid))
    .map((p) => `${p.pid} ${p.comm} ${p.state}`);
}

const CASES: readonly { opts: LegacyOptions; mechanism: string; secure?: boolean }[] = [
  { opts: { server: 'popa3d' }, mechanism: 'user' },
  { opts: { server: 'mailutils' }, mechanism: 'apop' },
  // STLS on the child's socket too (backend_tls auto), its certificate checked like a remote one's.
  { opts: { server: 'mailutils', stls: true }, mechanism: 'apop', secure: true },
];

for (const c of CASES) {
  describe(`exec: ${c.opts.server}${c.secure === true ? ' with STLS' : ''}, one process per session`, { timeout: 180_000 }, () => {
    let server: LegacyServer;
    let proxy: TestProxy;
    let reference: Buffer[];
    /** Processes of this test process that are not popwarden's: the harness's TCP listener chain. */
    let harnessPids: number[];

    before(async () => {
      server = await startLegacyServer(c.opts);
      reference = await settledMessages(server, alice);
      harnessPids = childrenOf(process.pid).map((p) => p.pid);
      proxy = await startTestProxy({
        backend: {
          address: { kind: 'exec', ...server.exec, environment: {}, cwd: undefined },
          trustLoopback: undefined,
          ...(server.caFile === undefined ? {} : { caFile: server.caFile, tls: 'starttls' as const }),
        },
      });
    });
    after(async () => {
      await proxy?.stop();
      await server?.stop();
    });

    test(`raw TLS client: logs in with ${c.mechanism}, every RETR byte-identical to the server's own`, async () => {
      const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
      try {
        await client.readLine();
        assert.match(await client.command(`USER ${alice.user}`), /^\+OK/);
        assert.match(await client.command(`PASS ${alice.pass}`, 15_000), /^\+OK/, proxy.logText().slice(-2_000));
        const audit = proxy.logs().filter((l) => l['event'] === 'login').at(-1);
        assert.equal(audit?.['backendMechanism'], c.mechanism);
        for (let n = 1; n <= reference.length; n++) {
          const { status, body } = await client.multi(`RETR ${n}`, 30_000);
          assert.match(status, /^\+OK/);
          assert.equal(sha256(body), sha256(dotStuff(reference[n - 1]!)), `RETR ${n}`);
        }
        assert.match(await client.command('QUIT'), /^\+OK/);
      } finally {
        client.destroy();
      }
      await backendProgramsExited(proxy);
      assert.deepEqual(leftovers(harnessPids), []);
    });

    const viaTls = (): ClientOptions => ({
      host: proxy.host, port: proxy.tlsPort, mode: 'implicit', user: alice.user, pass: alice.pass, caFile: proxy.caFile, timeoutMs: 60_000,
    });
    for (const [label, run] of [
      ['poplib, STLS port', () => fetchWithPoplib({ ...viaTls(), port: proxy.stlsPort, mode: 'stls', auth: 'user' })],
      ['curl pop3s://', () => fetchWithCurl(viaTls())],
    ] as const) {
      test(`${label}: every message byte-identical to the server's own`, async () => {
        const r = await run();
        assert.ok(r.ok, why(r));
        assertSameMessages(r, reference);
        await backendProgramsExited(proxy);
        assert.deepEqual(leftovers(harnessPids), []);
      });
    }

    const deleteThroughProxy = async (numbers: readonly number[], end: 'quit' | 'drop'): Promise<string[]> => {
      server.resetMaildrop();
      const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
      try {
        await client.readLine();
        await client.command(`USER ${alice.user}`);
        assert.match(await client.command(`PASS ${alice.pass}`, 15_000), /^\+OK/);
        for (const n of numbers) assert.match(await client.command(`DELE ${n}`), /^\+OK/);
        if (end === 'quit') assert.match(await client.command('QUIT', 15_000), /^\+OK/);
      } finally {
        client.destroy();
      }
      // The mbox is final once the program has exited.
      await backendProgramsExited(proxy);
      assert.deepEqual(leftovers(harnessPids), []);
      const left = (await server.headersDirect(alice)).map(messageId);
      await server.whenIdle();
      server.resetMaildrop();
      return left;
    };

    test('DELE 1 and DELE 3, then QUIT: exactly those two are gone', async () => {
      assert.deepEqual(await deleteThroughProxy([1, 3], 'quit'), [alice.messages[1]!.messageId]);
    });

    test('DELE, then the client is dropped: the program is ended, nothing is deleted', async () => {
      assert.deepEqual(await deleteThroughProxy([1, 2], 'drop'), alice.messages.map((m) => m.messageId));
    });
  });
}
