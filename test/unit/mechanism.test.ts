import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chooseMechanism, CLEARTEXT_MECHANISMS, type MechanismChoice, type MechanismInputs } from '../../src/backend/mechanism.js';
import { parseCapabilities, UNKNOWN_CAPABILITIES, type BackendCapabilities } from '../../src/pop3/capabilities.js';
import type { BackendAuthMode } from '../../src/config/types.js';

const TIMESTAMP = '<1896.697170952@dbc.mtview.ca.us>';

function inputs(over: Partial<MechanismInputs> & { capa?: readonly string[] }): MechanismInputs {
  const capabilities: BackendCapabilities = over.capa === undefined ? (over.capabilities ?? UNKNOWN_CAPABILITIES) : parseCapabilities(over.capa);
  return {
    mode: over.mode ?? 'auto',
    capabilities,
    apopTimestamp: over.apopTimestamp,
    cleartextAllowed: over.cleartextAllowed ?? false,
    ...(over.passOverApop === undefined ? {} : { passOverApop: over.passOverApop }),
  };
}

function used(choice: MechanismChoice): string {
  assert.equal(choice.kind, 'use', `expected a mechanism, got ${JSON.stringify(choice)}`);
  return choice.kind === 'use' ? choice.mechanism : '';
}

function none(choice: MechanismChoice): { reason: string; hint: string } {
  assert.equal(choice.kind, 'none', `expected no mechanism, got ${JSON.stringify(choice)}`);
  if (choice.kind !== 'none') throw new Error('unreachable');
  return choice;
}

describe('chooseMechanism, auto (B-01, B-02)', () => {
  it('B-02: prefers CRAM-MD5 over APOP when both are offered', () => {
    assert.equal(used(chooseMechanism(inputs({ capa: ['SASL CRAM-MD5', 'USER'], apopTimestamp: TIMESTAMP }))), 'cram-md5');
    assert.equal(used(chooseMechanism(inputs({ capa: ['SASL PLAIN CRAM-MD5'], apopTimestamp: TIMESTAMP, cleartextAllowed: true }))), 'cram-md5');
  });

  it('passes over APOP for a user without an APOP secret only where the link may carry a cleartext password', () => {
    const offer = { capa: ['USER'], apopTimestamp: TIMESTAMP, passOverApop: true };
    assert.equal(used(chooseMechanism(inputs({ ...offer, cleartextAllowed: true }))), 'user');
    assert.equal(used(chooseMechanism(inputs({ ...offer, cleartextAllowed: false }))), 'apop');
    assert.equal(used(chooseMechanism(inputs({ ...offer, capa: ['SASL CRAM-MD5'], cleartextAllowed: true }))), 'cram-md5');
  });

  it('uses APOP when only a timestamp is offered', () => {
    assert.equal(used(chooseMechanism(inputs({ capa: ['USER', 'SASL PLAIN'], apopTimestamp: TIMESTAMP }))), 'apop');
    assert.equal(used(chooseMechanism(inputs({ apopTimestamp: TIMESTAMP }))), 'apop');
  });

  it('prefers a challenge-response mechanism even where cleartext would be allowed', () => {
    assert.equal(used(chooseMechanism(inputs({ capa: ['USER', 'SASL PLAIN'], apopTimestamp: TIMESTAMP, cleartextAllowed: true }))), 'apop');
  });

  it('B-01: no timestamp, no CRAM-MD5, cleartext not allowed → none, with a hint naming the opt-in flag', () => {
    for (const capa of [['USER', 'SASL PLAIN LOGIN'], ['USER'], []]) {
      const choice = none(chooseMechanism(inputs({ capa })));
      assert.match(choice.hint, /--allow-plaintext-backend-auth/);
      assert.ok(choice.reason.length > 0);
    }
  });

  it('a named backend: the reason and hints name its backends.NAME.* keys, not the one-backend flags', () => {
    const backend = { name: 'north', named: true };
    const cleartext = none(chooseMechanism({ ...inputs({ capa: ['USER'] }), backend }));
    assert.match(cleartext.hint, /set backends\.north\.tls: starttls .*backends\.north\.allow_plaintext_auth: true/);
    const forced = none(chooseMechanism({ ...inputs({ capa: ['USER'] }), mode: 'apop', backend }));
    assert.match(forced.reason, /^backends\.north\.auth: apop is forced/);
    assert.match(forced.hint, /use backends\.north\.auth: auto/);
    for (const text of [cleartext.hint, forced.reason, forced.hint]) assert.doesNotMatch(text, /--backend|--allow/);
  });

  it('B-01: a backend without CAPA and without a timestamp gets no cleartext login either', () => {
    const choice = none(chooseMechanism(inputs({ capabilities: UNKNOWN_CAPABILITIES })));
    assert.match(choice.hint, /--allow-plaintext-backend-auth/);
  });

  it('cleartext allowed: PLAIN, then LOGIN, then USER', () => {
    assert.equal(used(chooseMechanism(inputs({ capa: ['USER', 'SASL LOGIN PLAIN'], cleartextAllowed: true }))), 'plain');
    assert.equal(used(chooseMechanism(inputs({ capa: ['USER', 'SASL LOGIN'], cleartextAllowed: true }))), 'login');
    assert.equal(used(chooseMechanism(inputs({ capa: ['USER'], cleartextAllowed: true }))), 'user');
  });

  it('CAPA unknown (-ERR) with cleartext allowed → USER/PASS (RFC 1939 baseline)', () => {
    assert.equal(used(chooseMechanism(inputs({ capabilities: UNKNOWN_CAPABILITIES, cleartextAllowed: true }))), 'user');
  });

  it('a CAPA that offers nothing usable → none, even with cleartext allowed', () => {
    none(chooseMechanism(inputs({ capa: ['TOP', 'UIDL', 'SASL GSSAPI'], cleartextAllowed: true })));
  });
});

describe('chooseMechanism, forced modes', () => {
  it('uses the forced mechanism when the backend offers it', () => {
    const cases: ReadonlyArray<readonly [Exclude<BackendAuthMode, 'auto'>, Partial<MechanismInputs> & { capa?: readonly string[] }]> = [
      ['cram-md5', { capa: ['SASL CRAM-MD5'] }],
      ['apop', { capa: ['SASL CRAM-MD5'], apopTimestamp: TIMESTAMP }],
      ['plain', { capa: ['SASL PLAIN CRAM-MD5'], cleartextAllowed: true }],
      ['login', { capa: ['SASL LOGIN'], cleartextAllowed: true }],
      ['user', { capa: ['USER', 'SASL CRAM-MD5'], cleartextAllowed: true }],
    ];
    for (const [mode, over] of cases) {
      assert.equal(used(chooseMechanism(inputs({ ...over, mode }))), mode, mode);
    }
  });

  it('a forced mechanism CAPA does not list is still tried (legacy servers accept more than they list), never another', () => {
    const cases: ReadonlyArray<readonly [Exclude<BackendAuthMode, 'auto'>, Partial<MechanismInputs> & { capa?: readonly string[] }]> = [
      ['cram-md5', { capa: ['USER', 'SASL PLAIN'], apopTimestamp: TIMESTAMP, cleartextAllowed: true }],
      ['plain', { capa: ['SASL LOGIN', 'USER'], cleartextAllowed: true }],
      ['login', { capa: ['SASL PLAIN', 'USER'], cleartextAllowed: true }],
      ['user', { capa: ['SASL PLAIN'], cleartextAllowed: true }],
    ];
    for (const [mode, over] of cases) {
      assert.equal(used(chooseMechanism(inputs({ ...over, mode }))), mode, mode);
    }
  });

  it('forced APOP without a timestamp in the greeting → none, not a fallback', () => {
    assert.match(none(chooseMechanism(inputs({ mode: 'apop', capa: ['SASL CRAM-MD5', 'USER'], cleartextAllowed: true }))).reason, /no APOP timestamp/);
  });

  it('a forced cleartext mechanism without permission → none, even when offered', () => {
    for (const mode of ['plain', 'login', 'user'] as const) {
      assert.ok(CLEARTEXT_MECHANISMS.has(mode));
      const choice = none(chooseMechanism(inputs({ mode, capa: ['USER', 'SASL PLAIN LOGIN'], cleartextAllowed: false })));
      assert.match(choice.hint, /--allow-plaintext-backend-auth/);
      none(chooseMechanism(inputs({ mode, capabilities: UNKNOWN_CAPABILITIES, cleartextAllowed: false })));
    }
  });

  it('CRAM-MD5 and APOP are not counted as cleartext', () => {
    assert.ok(!CLEARTEXT_MECHANISMS.has('cram-md5'));
    assert.ok(!CLEARTEXT_MECHANISMS.has('apop'));
  });
});
