/**
 * Dovecot's auth penalty behind popwarden (issue 9.4). Dovecot slows every login from an address
 * that has failed recently (2 s, 4 s, 8 s, at most 15 s), and behind popwarden every login comes
 * from popwarden's address: one guesser slows everyone. With
 * anvil's auth-penalty socket closed, as the README tells operators, there is no penalty
 * (`login_trusted_networks` does not skip it for a POP3 login in Dovecot 2.3: we tried).
 *
 * Dovecot's own failure delay is set to 0 and the guesses run in parallel (each looks up the
 * penalty before any has failed), so the tests do not sit out Dovecot's delays.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startDovecot, type DovecotOptions } from '../harness/dovecot.js';
import { sampleMaildrop } from '../harness/maildrop.js';
import { startTestProxy, type TestProxy } from '../harness/popwarden.js';
import { RawClient } from '../harness/raw-client.js';
import { Reply } from '../../src/pop3/replies.js';

const { alice, bob } = sampleMaildrop();

async function pass(proxy: TestProxy, user: string, password: string): Promise<string> {
  const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
  try {
    assert.match(await client.readLine(), /^\+OK /);
    assert.match(await client.command(`USER ${user}`), /^\+OK/);
    return await client.command(`PASS ${password}`, 30_000);
  } finally {
    client.destroy();
  }
}

/**
 * Three wrong guesses for alice through one popwarden (distinct passwords: Dovecot ignores a
 * repeated pair), then bob's right password through another with `bobAuthTimeoutMs`, both on
 * the same address as Dovecot sees it. Returns bob's reply.
 */
async function guessesThenBob(dovecotOptions: Omit<DovecotOptions, 'profile'>, bobAuthTimeoutMs?: number): Promise<string> {
  const dovecot = await startDovecot({ profile: 'user-only', authFailureDelay: '0', ...dovecotOptions });
  const backend = { host: dovecot.host, port: dovecot.port };
  const attackerSide = await startTestProxy({ backend, timeouts: { backendAuthMs: 30_000 } });
  const bobSide = await startTestProxy({ backend, timeouts: bobAuthTimeoutMs === undefined ? {} : { backendAuthMs: bobAuthTimeoutMs } });
  try {
    const guesses = await Promise.all([1, 2, 3].map((n) => pass(attackerSide, alice.user, `wrong-${n}`)));
    for (const reply of guesses) assert.equal(reply, Reply.authFailed);
    return await pass(bobSide, bob.user, bob.pass);
  } finally {
    await attackerSide.stop();
    await bobSide.stop();
    await dovecot.stop();
  }
}

describe("Dovecot's auth penalty behind popwarden (issue 9.4)", () => {
  test('as Dovecot ships, three guesses hold up the next correct login for longer than a short auth timeout', async () => {
    assert.equal(await guessesThenBob({}, 3_000), Reply.backendUnavailable);
  });

  test('the default timeouts.backend_auth outlasts the penalty: the correct login gets through', async () => {
    assert.equal(await guessesThenBob({}), Reply.loggedIn);
  });

  test('with the penalty switched off as the README says, the correct login is not held up', async () => {
    assert.equal(await guessesThenBob({ authPenalty: false }, 3_000), Reply.loggedIn);
  });
});
