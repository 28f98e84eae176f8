/**
 * A backend's CAPA answer is reused for a minute (issue 10 point 3b: the CPU a login costs), and
 * only one that made popwarden use CRAM-MD5 without STLS, so a backend that changed meanwhile
 * never gets anything weaker than a CRAM-MD5 response. Real Dovecot behind a recording tap: what
 * popwarden sent the backend is read from the tap.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { withDovecotBehindTap } from '../harness/dovecot.js';
import { login, startProtected } from '../harness/redis.js';
import type { Tap } from '../harness/tap.js';
import { sampleMaildrop } from '../harness/maildrop.js';
import { Reply } from '../../src/pop3/replies.js';

const { alice } = sampleMaildrop();


/** The command lines popwarden sent the backend after `from` octets. */
const sentSince = (tap: Tap, from = 0): string[] =>
  tap.bytesClientToServer().subarray(from).toString('latin1').split('\r\n').filter((line) => line !== '');

describe('CAPA answers reused for a minute', { timeout: 60_000 }, () => {
  test('logins to a backend that offers CRAM-MD5 ask CAPA once, then log in with CRAM-MD5 straight after the greeting', async () => {
    await withDovecotBehindTap('all', async (tap) => {
      const popwarden = await startProtected(tap, { authFailureDelayMs: 0 });
      try {
        for (let i = 0; i < 3; i++) assert.equal(await login(popwarden.proxy, '127.0.0.1', alice.user, alice.pass), Reply.loggedIn);
        const sent = sentSince(tap);
        assert.equal(sent.filter((line) => line === 'CAPA').length, 1, sent.join(' | '));
        assert.equal(sent.filter((line) => line === 'AUTH CRAM-MD5').length, 3);
      } finally {
        await popwarden.stop();
      }
    });
  });

  test('a backend that stopped taking CRAM-MD5 within the minute gets no password: one login fails unjudged, the next asks CAPA and the offer memory refuses', async () => {
    await withDovecotBehindTap('cram-md5-only', async (tap, swap) => {
      // trust_loopback would let USER/PASS through on its own: only CRAM-MD5 being reused, and
      // then the offer memory, keep the password off this link.
      const popwarden = await startProtected(tap, { authFailureDelayMs: 0, backendOptions: { trustLoopback: true } });
      try {
        assert.equal(await login(popwarden.proxy, '127.0.0.1', alice.user, alice.pass), Reply.loggedIn);
        await swap('user-only');
        const from = tap.bytesClientToServer().length;
        assert.match(await login(popwarden.proxy, '127.0.0.1', alice.user, alice.pass), /^-ERR \[SYS\/TEMP\]/);
        assert.deepEqual(sentSince(tap, from), ['AUTH CRAM-MD5'], 'the reused answer: no CAPA, and nothing after the refused AUTH');
        const next = tap.bytesClientToServer().length;
        assert.equal(await login(popwarden.proxy, '127.0.0.1', alice.user, alice.pass), Reply.loginNotPossibleSafely);
        assert.deepEqual(sentSince(tap, next), ['CAPA'], 'asked afresh, and refused as a downgrade before anything secret');
      } finally {
        await popwarden.stop();
      }
    });
  });
});
