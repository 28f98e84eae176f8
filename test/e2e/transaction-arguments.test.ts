/**
 * Issue 9.9: popwarden checks the arguments of the RFC 1939 commands itself. A malformed command
 * (`RETR 1 2`, `TOP 1 0 5`, ...) is answered -ERR by popwarden and never reaches the backend,
 * which might answer it with a whole message where popwarden framed one line (solid-pop3d and
 * Courier do); the session goes on. A well-formed command goes out in its canonical spelling.
 * Against a real Dovecot, through a tap that records the backend link.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startDovecot } from '../harness/dovecot.js';
import { startTap } from '../harness/tap.js';
import { startTestProxy } from '../harness/popwarden.js';
import { sharedBySuite } from '../harness/suite.js';
import { RawClient } from '../harness/raw-client.js';
import { dotStuff, sampleMaildrop } from '../harness/maildrop.js';

const { alice } = sampleMaildrop();

const MALFORMED: ReadonlyArray<readonly [string, RegExp]> = [
  ['RETR 1 2', /^-ERR Syntax error: RETR takes one message number$/],
  ['RETR', /^-ERR Syntax error: RETR/],
  ['RETR x', /^-ERR Syntax error: RETR/],
  ['RETR 0', /^-ERR Syntax error: RETR/],
  ['RETR 4294967297', /^-ERR Syntax error: RETR/],
  ['TOP 1 0 5', /^-ERR Syntax error: TOP takes a message number and a number of lines$/],
  ['TOP 1 -1', /^-ERR Syntax error: TOP/],
  ['TOP 1', /^-ERR Syntax error: TOP/],
  ['LIST 1 2', /^-ERR Syntax error: LIST/],
  ['UIDL 1 2', /^-ERR Syntax error: UIDL/],
  ['DELE 1 2', /^-ERR Syntax error: DELE/],
  ['DELE', /^-ERR Syntax error: DELE/],
  ['STAT 1', /^-ERR Syntax error: STAT/],
  ['NOOP x', /^-ERR Syntax error: NOOP/],
  ['RSET 1', /^-ERR Syntax error: RSET/],
  ['QUIT now', /^-ERR Syntax error: QUIT/],
];

describe('TRANSACTION arguments checked by popwarden (issue 9.9)', { timeout: 120_000 }, () => {
  const chain = sharedBySuite(async (keep) => {
    const dovecot = keep(await startDovecot({ profile: 'all' }));
    const tap = keep(await startTap(dovecot.host, dovecot.port));
    // Room for every malformed command in one session: the budget itself is tested elsewhere.
    const proxy = keep(await startTestProxy({ backend: { host: tap.host, port: tap.port }, limits: { maxInvalidCommands: 100 } }));
    return { tap, proxy };
  });

  test('malformed commands get -ERR from popwarden, never reach the backend, and the session goes on', async () => {
    const { tap, proxy } = chain();
    const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
    await client.readLine();
    assert.match(await client.command(`USER ${alice.user}`), /^\+OK/);
    assert.equal(await client.command(`PASS ${alice.pass}`, 15_000), '+OK Logged in');
    const sentBefore = tap.bytesClientToServer().length;
    for (const [command, expected] of MALFORMED) {
      assert.match(await client.command(command), expected, command);
    }
    const sentDuring = tap.bytesClientToServer().subarray(sentBefore).toString('latin1');
    assert.equal(sentDuring, '', 'nothing crossed the backend link');

    const { status, body } = await client.multi('RETR 1', 15_000);
    assert.match(status, /^\+OK/);
    assert.ok(body.equals(dotStuff(alice.messages[0]!.bytes)), 'the next RETR is whole and in step');
    assert.equal(await client.command('QUIT'), '+OK Logging out.');
  });

  test('well-formed commands go out canonical: upper-case verb, single spaces, no trailing space', async () => {
    const { tap, proxy } = chain();
    const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
    await client.readLine();
    await client.command(`USER ${alice.user}`);
    assert.equal(await client.command(`PASS ${alice.pass}`, 15_000), '+OK Logged in');
    const sentBefore = tap.bytesClientToServer().length;
    const top = await client.multi('top  1   0 ', 15_000);
    assert.match(top.status, /^\+OK/);
    assert.match(await client.command('list 2 '), /^\+OK 2 /);
    const sent = tap.bytesClientToServer().subarray(sentBefore).toString('latin1');
    assert.equal(sent, 'TOP 1 0\r\nLIST 2\r\n');
    client.destroy();
  });
});
