import { describe, mock, test } from 'node:test';
import assert from 'node:assert/strict';
import fs, { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { BACKEND_MEMORY_FILE, BackendMemory, unseenStlsWarning } from '../../src/backend/memory.js';
import { loopbackTrusted } from '../../src/backend/mechanism.js';
import { testConfig } from '../harness/popwarden.js';
import { scratchDir } from '../harness/scratch.js';

const fresh = (): BackendMemory => new BackendMemory(join(scratchDir('popwarden-memory'), 'state'));

describe('BackendMemory', () => {
  test('remembers the first offer in a 0600 file and accepts the same offer again', () => {
    const memory = fresh();
    assert.deepEqual(memory.observe('mail:110', { strongest: 'apop', stls: true }), { kind: 'ok' });
    assert.equal(statSync(memory.file).mode & 0o777, 0o600);
    assert.deepEqual(memory.observe('mail:110', { strongest: 'apop', stls: true }), { kind: 'ok' });
    assert.equal(memory.entries()['mail:110']?.strongest, 'apop');
  });

  test('only goes up: a stronger offer is remembered, a weaker mechanism or a missing STLS refused', () => {
    const memory = fresh();
    memory.observe('mail:110', { strongest: 'apop', stls: false });
    assert.equal(memory.observe('mail:110', { strongest: 'cram-md5', stls: true }).kind, 'ok');
    const weaker = memory.observe('mail:110', { strongest: 'apop', stls: true });
    assert.equal(weaker.kind, 'refuse');
    const stripped = memory.observe('mail:110', { strongest: 'cram-md5', stls: false });
    assert.equal(stripped.kind, 'refuse');
    assert.equal(memory.observe('mail:110', { strongest: 'cram-md5', stls: undefined }).kind, 'ok', 'STLS not looked at');
    assert.deepEqual({ ...memory.entries()['mail:110'], firstSeen: 0, changed: 0 }, { strongest: 'cram-md5', stls: true, firstSeen: 0, changed: 0 });
    assert.equal(memory.observe('other:110', { strongest: 'cleartext', stls: false }).kind, 'ok', 'kept per address');
  });

  test('forget lets the next offer be remembered afresh', () => {
    const memory = fresh();
    memory.observe('mail:110', { strongest: 'cram-md5', stls: false });
    assert.equal(memory.forget('mail:110'), true);
    assert.equal(memory.forget('mail:110'), false);
    assert.equal(memory.observe('mail:110', { strongest: 'cleartext', stls: false }).kind, 'ok');
  });

  test('reads the file once while it is unchanged, and again as soon as another process forgets or deletes', () => {
    const memory = fresh();
    memory.observe('mail:110', { strongest: 'cram-md5', stls: false });
    const reads = mock.method(fs, 'readFileSync');
    syncBuiltinESMExports(); // the module's named import follows the mock
    try {
      for (let i = 0; i < 50; i++) assert.equal(memory.observe('mail:110', { strongest: 'cram-md5', stls: false }).kind, 'ok');
      assert.ok(reads.mock.callCount() <= 1, `read ${reads.mock.callCount()} times for 50 logins`);
      // `popwarden backend forget` runs in its own process, with its own BackendMemory.
      assert.equal(new BackendMemory(memory.stateDir).forget('mail:110'), true);
      assert.equal(memory.observe('mail:110', { strongest: 'cleartext', stls: false }).kind, 'ok', 'the forget applies at once');
      assert.equal(memory.observe('mail:110', { strongest: 'cleartext', stls: false }).kind, 'ok');
      new BackendMemory(memory.stateDir).observe('mail:110', { strongest: 'apop', stls: false });
      assert.equal(memory.observe('mail:110', { strongest: 'cleartext', stls: false }).kind, 'refuse', 'another writer is seen too');
      rmSync(memory.file);
      assert.equal(memory.observe('mail:110', { strongest: 'cleartext', stls: false }).kind, 'ok', 'a deleted file is a blank memory');
    } finally {
      reads.mock.restore();
      syncBuiltinESMExports();
    }
  });

  test('holds at most its bound of addresses: a new one past it is refused (fails closed), the known ones go on', () => {
    const memory = new BackendMemory(join(scratchDir('popwarden-memory'), 'state'), 2);
    assert.equal(memory.observe('a:110', { strongest: 'apop', stls: false }).kind, 'ok');
    assert.equal(memory.observe('b:110', { strongest: 'apop', stls: false }).kind, 'ok');
    const full = memory.observe('c:110', { strongest: 'cram-md5', stls: true });
    assert.equal(full.kind, 'refuse');
    assert.match(full.kind === 'refuse' ? full.hint : '', /popwarden backend forget/);
    assert.deepEqual(Object.keys(memory.entries()).sort(), ['a:110', 'b:110'], 'nothing written');
    assert.equal(memory.observe('a:110', { strongest: 'cram-md5', stls: true }).kind, 'ok', 'a known address still goes up');
    assert.equal(memory.observe('b:110', { strongest: 'cleartext', stls: false }).kind, 'refuse', 'and is still guarded');
    memory.mirror('d:110', { strongest: 'apop', stls: false, firstSeen: 'x', changed: 'x' });
    assert.equal(memory.entries()['d:110'], undefined, "the shared memory's copy keeps the bound too");
    assert.equal(memory.forget('b:110'), true);
    assert.equal(memory.observe('c:110', { strongest: 'cram-md5', stls: true }).kind, 'ok', 'a forgotten address makes room');
  });

  test('a file that is not a memory refuses logins (fails closed) and names the fix', () => {
    const memory = fresh();
    memory.observe('mail:110', { strongest: 'cram-md5', stls: false });
    writeFileSync(memory.file, '{"nonsense": true}');
    const verdict = memory.observe('mail:110', { strongest: 'cram-md5', stls: false });
    assert.equal(verdict.kind, 'refuse');
    assert.match(verdict.kind === 'refuse' ? verdict.hint : '', new RegExp(BACKEND_MEMORY_FILE));
    assert.equal(readFileSync(memory.file, 'utf8'), '{"nonsense": true}', 'left as it was');
  });
});

describe('unseenStlsWarning', () => {
  const backend = (host: string, tls: 'auto' | 'starttls' = 'auto') => testConfig({ backend: { host, port: 110, tls } }).backends[0]!;

  test('warns for a remote backend with backend_tls auto until STLS has been seen', () => {
    const memory = fresh();
    assert.match(unseenStlsWarning(backend('mail.example.org'), memory) ?? '', /never seen it offer STLS/);
    memory.observe('mail.example.org:110', { strongest: 'apop', stls: true });
    assert.equal(unseenStlsWarning(backend('mail.example.org'), memory), undefined);
  });

  test('names backends.NAME.tls for a named backend', () => {
    const named = testConfig({ backends: [{ name: 'north', host: 'mail.example.org', port: 110, tls: 'auto' }] }).backends[0]!;
    const warning = unseenStlsWarning(named, fresh()) ?? '';
    assert.match(warning, /runs with backends\.north\.tls: auto.*Set backends\.north\.tls: starttls/);
    assert.doesNotMatch(warning, /backend_tls/);
  });

  test('is quiet for loopback and for backend_tls starttls', () => {
    assert.equal(unseenStlsWarning(backend('127.0.0.1'), fresh()), undefined);
    assert.equal(unseenStlsWarning(backend('mail.example.org', 'starttls'), fresh()), undefined);
  });
});

describe('loopbackTrusted', () => {
  test('by default only a privileged port; true any port; false never; never a remote address', () => {
    assert.equal(loopbackTrusted(undefined, '127.0.0.1', 110), true);
    assert.equal(loopbackTrusted(undefined, '127.0.0.1', 1110), false);
    assert.equal(loopbackTrusted(undefined, '::1', 995), true);
    assert.equal(loopbackTrusted(true, '127.0.0.1', 1110), true);
    assert.equal(loopbackTrusted(false, '127.0.0.1', 110), false);
    assert.equal(loopbackTrusted(true, '192.0.2.1', 110), false);
  });
});

describe('BackendMemory and the state directory (review finding F4)', () => {
  test('a memory file others may write is refused: whoever rewrites it could re-open a downgrade', () => {
    const memory = fresh();
    memory.observe('mail:110', { strongest: 'cram-md5', stls: true });
    fs.chmodSync(memory.file, 0o666);
    const verdict = memory.observe('mail:110', { strongest: 'cleartext', stls: false });
    assert.equal(verdict.kind, 'refuse');
    assert.match(verdict.kind === 'refuse' ? verdict.reason : '', /writable/);
  });

  test('a memory in a state directory others may write is refused, even when the file itself is 0600', () => {
    const memory = fresh();
    memory.observe('mail:110', { strongest: 'cram-md5', stls: true });
    fs.chmodSync(memory.stateDir, 0o777);
    // A rewritten file (another inode) is read afresh: that is when the checks run.
    writeFileSync(`${memory.file}.new`, readFileSync(memory.file), { mode: 0o600 });
    fs.renameSync(`${memory.file}.new`, memory.file);
    assert.equal(memory.observe('mail:110', { strongest: 'cram-md5', stls: true }).kind, 'refuse');
  });
});
