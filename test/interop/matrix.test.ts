/**
 * The interop matrix (issue 12, points 4 to 7): every real server in SERVER_ROWS, reached in each
 * backend form it supports, behind one popwarden, with every real client in MATRIX_CLIENTS on
 * both of popwarden's ports (implicit TLS and STLS):
 *
 *   client --TLS--> popwarden --> tap --> server
 *
 * One server and one popwarden per (server, form); the cells run one after another against them,
 * and the maildrop is put back (and the reference bytes read again) after any cell that changed
 * it. Each cell performs its client's checks (clients.ts) and, where the server offers APOP,
 * CRAM-MD5 or STLS, proves that the tapped backend link never carried the password. A row with a
 * known failure runs its cells as todo and the table says so. The table is printed at the end
 * (`npm run interop` also writes it to a file; report.ts).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertSameMessages, connectPop, readOffers, type ClientOptions, type ServerOffers } from '../harness/clients.js';
import { settledMessages } from '../harness/legacy.js';
import { messageIdOf, sampleMaildrop } from '../harness/maildrop.js';
import { startTestProxy, type TestProxy } from '../harness/popwarden.js';
import { passwordFormsIn } from '../harness/tap.js';
import { describeClientRun, MATRIX_CLIENTS, PORTS, type Check, type MatrixClient, type PortKind } from './clients.js';
import { linkFor, type FormLink } from './forms.js';
import { cellKey, renderMatrix, writeReport, type RowResult } from './report.js';
import { SERVER_ROWS, type RunningServer } from './servers.js';

const { alice } = sampleMaildrop();
const ALL_IDS = alice.messages.map((m) => m.messageId);
const rows: RowResult[] = [];
/** A server rewriting a 5 MB mbox on a loaded CI machine may take a while to end its session. */
const IDLE_TIMEOUT_MS = 30_000;

/** What the server offers on a fresh direct connection, in a few words. */
async function probeOffers(server: RunningServer): Promise<ServerOffers> {
  const conn = await connectPop({ host: server.host, port: server.port });
  try {
    const offers = await readOffers(conn);
    await conn.command('QUIT');
    return offers;
  } finally {
    conn.close();
  }
}

function describeOffers(o: ServerOffers): string {
  const capa = o.capa?.map((l) => l.toUpperCase());
  return [
    o.apopTimestamp ? 'APOP timestamp' : 'no timestamp',
    capa === undefined ? 'no CAPA' : capa.includes('USER') ? 'USER' : 'no USER',
    ...(o.sasl.length > 0 ? [`SASL ${o.sasl.join(' ')}`] : []),
    ...(o.stls ? ['STLS'] : []),
  ].join(', ');
}

/**
 * What popwarden chose on the backend link: STLS (seen on the tap) and the mechanisms it logged,
 * in the order it first used them (a refused APOP retried in clear shows as "APOP, then USER").
 */
function describeChoice(proxy: TestProxy, link: FormLink): string | undefined {
  const mechanisms = [...new Set(proxy.logs().flatMap((l) => (typeof l['backendMechanism'] === 'string' ? [l['backendMechanism'].toUpperCase()] : [])))];
  if (mechanisms.length === 0) return undefined;
  const stls = /(^|\r\n)STLS\r\n/.test(link.clientToServer().toString('latin1'));
  return [...(stls ? ['STLS'] : []), ...mechanisms].join(', then ');
}

/** A failure in one line for the table's notes: the first line and the last (a client's final error). */
function brief(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const picked = lines.length <= 2 ? lines : [lines[0]!, '…', lines.at(-1)!];
  return picked.join(' ').slice(0, 300);
}

/** POPWARDEN_INTEROP_ONLY=id,id,... runs only those rows (`npm run interop -- --only popa3d`). */
const only = process.env['POPWARDEN_INTEROP_ONLY']?.split(',').filter((id) => id !== '');

for (const row of SERVER_ROWS.filter((r) => only === undefined || only.length === 0 || only.includes(r.id))) {
  for (const form of row.forms) {
    const result: RowResult = {
      id: row.id,
      label: row.label,
      form,
      offers: '?',
      chose: '?',
      needs: row.needs,
      cells: {},
      ...(row.knownFailure === undefined ? {} : { knownFailure: row.knownFailure }),
    };
    rows.push(result);

    describe(`interop: ${row.label} (${form} backend)`, { timeout: 900_000 }, () => {
      let server: RunningServer | undefined;
      let link: FormLink | undefined;
      let proxy: TestProxy | undefined;
      let reference: Buffer[] = [];
      /** The maildrop differs from the sample: put it back before the next check. */
      let dirty = false;

      before(async () => {
        try {
          server = await row.start();
          result.offers = describeOffers(await probeOffers(server));
          assert.equal(result.offers, row.expect.offers, 'what the server offers');
          link = await linkFor(form, server);
          proxy = await startTestProxy({ backend: { ...row.backendSettings?.(server), ...link.backend } });
          reference = await settledMessages(server, alice, IDLE_TIMEOUT_MS);
          await server.whenIdle(IDLE_TIMEOUT_MS);
          server.snapshotMaildrop?.();
          assert.deepEqual(reference.map(messageIdOf), ALL_IDS, 'the server serves the sample maildrop');
        } catch (error) {
          result.error = brief((error as Error).message);
          throw error;
        }
      });
      after(async () => {
        await proxy?.stop();
        await link?.stop();
        await server?.stop();
      });

      /** Every session has ended, on the link and in the server: the maildrop is final. */
      const whenIdle = async (): Promise<void> => {
        await link!.whenIdle(IDLE_TIMEOUT_MS);
        await server!.whenIdle(IDLE_TIMEOUT_MS);
      };

      /** The Message-IDs alice's maildrop holds once every session has ended. */
      const leftOnServer = async (): Promise<string[]> => {
        await whenIdle();
        const left = (await server!.headersDirect(alice)).map(messageIdOf);
        if (left.length !== ALL_IDS.length) dirty = true;
        return left;
      };

      const runCheck = async (client: MatrixClient, check: Check, o: ClientOptions): Promise<void> => {
        if (dirty) {
          await whenIdle();
          server!.resetMaildrop();
          dirty = false;
          // A snapshot brings back the very bytes the reference was read from; otherwise read them again.
          if (server!.snapshotMaildrop === undefined) reference = await settledMessages(server!, alice, IDLE_TIMEOUT_MS);
        }
        switch (check) {
          case 'fetch':
          case 'fetch-delete': {
            const r = await client.fetch!(o);
            if (check === 'fetch-delete') dirty = true;
            assert.ok(r.ok, describeClientRun(r));
            assertSameMessages(r, reference);
            if (check === 'fetch-delete') assert.deepEqual(await leftOnServer(), [], 'the client deleted what it fetched');
            return;
          }
          case 'dele-quit': {
            const r = await client.delete!(o, [1, 3], 'quit');
            const left = await leftOnServer();
            assert.ok(r.ok, r.detail);
            assert.deepEqual(left, [ALL_IDS[1]], 'DELE 1, DELE 3, QUIT: exactly those two are gone');
            return;
          }
          case 'dele-kill': {
            const r = await client.delete!(o, [1, 2], 'kill');
            const left = await leftOnServer();
            assert.ok(r.ok, r.detail);
            assert.deepEqual(left, ALL_IDS, 'DELE, then the client killed: nothing is gone');
            return;
          }
        }
      };

      for (const client of MATRIX_CLIENTS) {
        for (const port of PORTS) {
          const options = row.knownFailure === undefined ? {} : { todo: row.knownFailure };
          test(`${client.label(port)}: ${client.checks.join(', ')}`, { timeout: 300_000, ...options }, async () => {
            assert.ok(server !== undefined && link !== undefined && proxy !== undefined, 'the row did not start');
            const o = clientOptions(proxy, port);
            const tapFrom = link.clientToServer().length;
            const failed: string[] = [];
            for (const check of client.checks) {
              try {
                await runCheck(client, check, o);
              } catch (error) {
                failed.push(`${check}: ${brief((error as Error).message)}`);
                // A known failure fails every check the same way (no login): the first says it.
                if (row.knownFailure !== undefined) break;
              }
            }
            await whenIdle();
            const leaked = passwordFormsIn(link.clientToServer().subarray(tapFrom), alice.user, alice.pass);
            if (row.protectsPassword && leaked.length > 0) failed.push(`the backend link carried the password as ${leaked.join(', ')}`);
            // Where popwarden may send it (USER/PASS on the trusted loopback link), the tap must see
            // it: proof that the tap records what crosses the link and the check above can fail.
            if (!row.protectsPassword && failed.length === 0 && leaked.length === 0) failed.push('the tap did not see the USER/PASS login');
            result.chose = describeChoice(proxy, link) ?? result.chose;
            if (result.chose !== row.expect.chose) failed.push(`popwarden chose ${result.chose} on the backend link, not ${row.expect.chose}`);
            result.cells[cellKey(client, port)] = {
              status: failed.length === 0 ? 'pass' : row.knownFailure === undefined ? 'fail' : 'known-fail',
              failed,
            };
            assert.deepEqual(failed, []);
          });
        }
      }
    });
  }
}

function clientOptions(proxy: TestProxy, port: PortKind): ClientOptions {
  return {
    host: proxy.host,
    port: port === 'implicit' ? proxy.tlsPort : proxy.stlsPort,
    mode: port,
    user: alice.user,
    pass: alice.pass,
    caFile: proxy.caFile,
    timeoutMs: 120_000,
  };
}

after(() => {
  const table = renderMatrix(rows, MATRIX_CLIENTS, PORTS);
  console.log(`\ninterop matrix:\n\n${table}`);
  const dir = process.env['POPWARDEN_INTEROP_REPORT'];
  if (dir !== undefined && dir !== '') writeReport(dir, rows, table);
});
