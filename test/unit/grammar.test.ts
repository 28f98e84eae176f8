import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isMessageNumber, parseCommand, parseStatusLine, statusIndicator, type Command } from '../../src/pop3/grammar.js';
import { hasMultilineReply, planRelay, REFUSED_AFTER_LOGIN, TRANSACTION_RULES } from '../../src/relay/policy.js';

function bytes(text: string): Buffer {
  return Buffer.from(text, 'latin1');
}

function command(text: string): Command {
  const parsed = parseCommand(bytes(text));
  assert.ok(parsed !== undefined, `${JSON.stringify(text)} should parse`);
  return parsed;
}

describe('parseCommand', () => {
  it('upper-cases the keyword whatever its case (RFC 1939 §3)', () => {
    for (const text of ['capa', 'CaPa', 'CAPA']) assert.equal(command(text).verb, 'CAPA');
  });

  it('returns no arguments for a bare keyword', () => {
    assert.deepEqual(command('STAT'), { verb: 'STAT', rest: '', args: [] });
  });

  it('keeps the spaces in the rest of the line (a PASS argument may contain spaces)', () => {
    const pass = command('PASS my secret pw');
    assert.equal(pass.verb, 'PASS');
    assert.equal(pass.rest, 'my secret pw');
    assert.deepEqual(pass.args, ['my', 'secret', 'pw']);
    assert.equal(command('PASS  two  spaces ').rest, ' two  spaces ');
  });

  it('splits token arguments on single spaces', () => {
    assert.deepEqual(command('TOP 1 10').args, ['1', '10']);
    assert.deepEqual(command('RETR 1').args, ['1']);
  });

  it('leaves out the empty tokens of doubled, leading and trailing spaces', () => {
    assert.deepEqual(command('RETR 1 ').args, ['1']);
    assert.deepEqual(command('RETR  1').args, ['1']);
    assert.deepEqual(command('TOP 1  10 ').args, ['1', '10']);
    assert.deepEqual(command('NOOP ').args, []);
    assert.deepEqual(command('NOOP  ').args, []);
  });

  it('keeps non-ASCII bytes of the rest unchanged (latin1, one char per byte)', () => {
    const user = command('USER j\xc3\xbcrgen');
    assert.ok(Buffer.from(user.rest, 'latin1').equals(bytes('j\xc3\xbcrgen')));
  });

  it('rejects control bytes, NUL, TAB and DEL anywhere in the line', () => {
    for (const text of ['USER a\x00b', 'US\x00ER a', 'USER\tbob', 'PASS a\rb', 'PASS a\nb', 'NOOP\x1b[2J', 'USER a\x7f', '\x00']) {
      assert.equal(parseCommand(bytes(text)), undefined, JSON.stringify(text));
    }
  });

  it('rejects lines that do not start with a keyword', () => {
    for (const text of ['', ' CAPA', '123', 'RETR1', 'X-CMD', 'CAPA\xff', '+OK', '*', 'A'.repeat(41)]) {
      assert.equal(parseCommand(bytes(text)), undefined, JSON.stringify(text));
    }
    assert.equal(command('A'.repeat(40)).verb, 'A'.repeat(40));
  });

  it('round-trips any printable line: verb + " " + rest rebuilds it (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[A-Za-z]{1,40}$/),
        fc.option(fc.stringMatching(/^[\x20-\x7e]{0,60}$/), { nil: undefined }),
        (keyword, rest) => {
          const text = rest === undefined ? keyword : `${keyword} ${rest}`;
          const parsed = command(text);
          assert.equal(parsed.verb, keyword.toUpperCase());
          assert.equal(parsed.rest, rest ?? '');
        },
      ),
    );
  });
});

describe('isMessageNumber', () => {
  it('accepts 1 up to 2^31-1', () => {
    for (const token of ['1', '9', '10', '42', '2147483647']) assert.equal(isMessageNumber(token), true, token);
  });

  it('rejects zero, signs, leading zeros, exponents, overflows and junk', () => {
    for (const token of ['0', '00', '01', '-1', '+1', '1e3', '1.0', ' 1', '1 ', '0x10', '', '2147483648', '4294967297', '99999999999', '１']) {
      assert.equal(isMessageNumber(token), false, JSON.stringify(token));
    }
  });
});

describe('parseStatusLine', () => {
  it('reads +OK and -ERR with text', () => {
    assert.deepEqual(parseStatusLine(bytes('+OK 2 messages (320 octets)')), { ok: true, code: undefined, text: '2 messages (320 octets)' });
    assert.deepEqual(parseStatusLine(bytes('-ERR no such message')), { ok: false, code: undefined, text: 'no such message' });
  });

  it('reads a bare +OK and a bare -ERR', () => {
    assert.deepEqual(parseStatusLine(bytes('+OK')), { ok: true, code: undefined, text: '' });
    assert.deepEqual(parseStatusLine(bytes('-ERR')), { ok: false, code: undefined, text: '' });
  });

  it('extracts RFC 2449 response codes, upper-cased', () => {
    assert.deepEqual(parseStatusLine(bytes('-ERR [IN-USE] x')), { ok: false, code: 'IN-USE', text: 'x' });
    assert.deepEqual(parseStatusLine(bytes('-ERR [SYS/TEMP]')), { ok: false, code: 'SYS/TEMP', text: '' });
    assert.deepEqual(parseStatusLine(bytes('-ERR [sys/perm] gone')), { ok: false, code: 'SYS/PERM', text: 'gone' });
    assert.deepEqual(parseStatusLine(bytes('-ERR [in-use] busy')), { ok: false, code: 'IN-USE', text: 'busy' });
    assert.equal(parseStatusLine(bytes('+OK [LOGIN-DELAY] hi'))?.code, 'LOGIN-DELAY');
  });

  it('does not take a bracket later in the text for a code', () => {
    assert.deepEqual(parseStatusLine(bytes('-ERR bad [AUTH] x')), { ok: false, code: undefined, text: 'bad [AUTH] x' });
  });

  it('returns undefined for anything that is not a status line', () => {
    for (const text of ['', 'OK', '+ok', '-err x', '+OKAY', '-ERROR', '+', '+ ', ' +OK', '* OK', 'junk', '+OKx', '-ERRx']) {
      assert.equal(parseStatusLine(bytes(text)), undefined, JSON.stringify(text));
      assert.equal(statusIndicator(bytes(text)), undefined, JSON.stringify(text));
    }
  });

  it('statusIndicator tells +OK from -ERR as parseStatusLine does, from the bytes', () => {
    for (const text of ['+OK', '+OK 2 messages', '+OK ', '-ERR', '-ERR [IN-USE] x', '-ERR ']) {
      assert.equal(statusIndicator(bytes(text)), text.startsWith('+'), JSON.stringify(text));
    }
  });
});

describe('hasMultilineReply (D-06)', () => {
  const table: ReadonlyArray<readonly [string, boolean]> = [
    ['RETR 1', true],
    ['retr 7', true],
    ['TOP 1 0', true],
    ['LIST', true],
    ['UIDL', true],
    ['CAPA', true],
    ['LIST 1', false],
    ['UIDL 1', false],
    ['STAT', false],
    ['XTND', false],
    ['XTND XMIT', false],
    ['NOOP', false],
    ['DELE 1', false],
    ['RSET', false],
    ['QUIT', false],
    ['RETR', false],
    ['TOP 1', false],
    ['LANG', true],
    ['LANG en', false],
  ];
  for (const [text, multi] of table) {
    it(`${text} → ${multi ? 'multi-line' : 'single line'}`, () => {
      assert.equal(hasMultilineReply(command(text)), multi);
    });
  }

  it('refuses re-authentication and STLS after login (R-10)', () => {
    assert.deepEqual([...REFUSED_AFTER_LOGIN].sort(), ['APOP', 'AUTH', 'PASS', 'STLS', 'USER']);
  });
});

describe('planRelay: TRANSACTION arguments (issue 9.9)', () => {
  const plan = (text: string) => planRelay(command(text), bytes(text));
  const relayed = (text: string): string | undefined => {
    const result = plan(text);
    return result.kind === 'relay' ? result.line.toString('latin1') : undefined;
  };

  it('relays well-formed RFC 1939 commands in canonical form', () => {
    const table: ReadonlyArray<readonly [string, string]> = [
      ['STAT', 'STAT'],
      ['list', 'LIST'],
      ['LIST 3', 'LIST 3'],
      ['retr 1 ', 'RETR 1'],
      ['TOP  2  0', 'TOP 2 0'],
      ['TOP 1 2147483647', 'TOP 1 2147483647'],
      ['UIDL', 'UIDL'],
      ['UIDL 2147483647', 'UIDL 2147483647'],
      ['DELE 9', 'DELE 9'],
      ['NOOP', 'NOOP'],
      ['RSET', 'RSET'],
      ['QUIT', 'QUIT'],
      ['LAST', 'LAST'],
      ['CAPA', 'CAPA'],
    ];
    for (const [text, out] of table) assert.equal(relayed(text), out, text);
  });

  it('sends a line the client already wrote canonically as it came, without building a copy', () => {
    for (const text of ['STAT', 'RETR 1', 'TOP 2 0', 'UIDL']) {
      const raw = bytes(text);
      const result = planRelay(command(text), raw);
      assert.ok(result.kind === 'relay' && result.line === raw, text);
    }
    for (const text of ['retr 1', 'RETR  1', 'RETR 1 ', 'NOOP ']) {
      const raw = bytes(text);
      const result = planRelay(command(text), raw);
      assert.ok(result.kind === 'relay' && result.line !== raw, text);
    }
  });

  it('relays unknown extension verbs exactly as the client wrote them', () => {
    assert.equal(relayed('XTND XMIT  a'), 'XTND XMIT  a');
  });

  it('refuses extra, missing and malformed arguments with a fixed -ERR that never echoes the client', () => {
    for (const text of [
      'RETR 1 2', 'RETR', 'RETR 0', 'RETR 01', 'RETR +1', 'RETR 2147483648', 'TOP 1 0 5', 'TOP 1', 'TOP 1 -1',
      'TOP 1 x', 'TOP 0 1', 'LIST 1 2', 'LIST x', 'UIDL 1 2', 'DELE', 'DELE 1 2', 'STAT 1', 'NOOP x', 'RSET 1',
      'QUIT now', 'LAST 1', 'CAPA x',
    ]) {
      const result = plan(text);
      assert.equal(result.kind, 'refuse', text);
      // One fixed line per verb, whatever the arguments were.
      if (result.kind === 'refuse') assert.equal(result.text, TRANSACTION_RULES[command(text).verb]?.refusal, text);
    }
  });
});
