/**
 * The state directory and the secrets popwarden keeps in it: a directory or file that another
 * user could have written is refused before anything in it is trusted (issue 9, point 12).
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../src/observability/log.js';
import { CERT_FILE_NAME, KEY_FILE_NAME, ensureSelfSigned, generateSelfSigned } from '../../src/certs/self-signed.js';
import { GENERATED_KEY_FILE, loadHmacKey } from '../../src/auth/rate-limit/hmac.js';
import { ensureStateDir } from '../../src/config/state-dir.js';

const root = mkdtempSync(join(tmpdir(), 'popwarden-state-dir-'));
after(() => rmSync(root, { recursive: true, force: true }));
let counter = 0;
const log = createLogger('silent');
/** uid and gid of `nobody` on Debian: another user than the one the tests run as (root). */
const NOBODY = 65534;

/** A state dir with mode `mode` holding a planted self-signed pair (a certificate the attacker chose). */
async function plantedStateDir(mode: number): Promise<string> {
  const dir = join(root, `state-${++counter}`);
  mkdirSync(dir);
  chmodSync(dir, mode);
  const pair = await generateSelfSigned(['planted.example']);
  writeFileSync(join(dir, CERT_FILE_NAME), pair.certPem);
  writeFileSync(join(dir, KEY_FILE_NAME), pair.keyPem, { mode: 0o600 });
  writeFileSync(join(dir, GENERATED_KEY_FILE), `${'ab'.repeat(32)}\n`, { mode: 0o600 });
  return dir;
}

describe('state_dir permissions', () => {
  it('a world-writable state dir is refused, with the path and the fix', async () => {
    const dir = await plantedStateDir(0o777);
    await assert.rejects(ensureSelfSigned(dir, ['localhost'], log), {
      message: `state_dir ${dir} is writable by group or others (mode 0777); check what is in it, then chmod 700 ${dir}`,
    });
    assert.throws(() => loadHmacKey(undefined, dir), /is writable by group or others/);
  });

  it('a group-writable state dir is refused', async () => {
    const dir = await plantedStateDir(0o770);
    await assert.rejects(ensureSelfSigned(dir, ['localhost'], log), /mode 0770.*chmod 700/);
    assert.throws(() => loadHmacKey(undefined, dir), /mode 0770/);
  });

  it('a file owned by another user is refused, even in a private state dir', async () => {
    const dir = await plantedStateDir(0o700);
    chownSync(join(dir, CERT_FILE_NAME), NOBODY, NOBODY);
    await assert.rejects(ensureSelfSigned(dir, ['localhost'], log), new RegExp(`${CERT_FILE_NAME} is owned by uid ${NOBODY}, not by popwarden's user .*; check what put it there, then chown `));
    chownSync(join(dir, GENERATED_KEY_FILE), NOBODY, NOBODY);
    assert.throws(() => loadHmacKey(undefined, dir), new RegExp(`${GENERATED_KEY_FILE} is owned by uid ${NOBODY}`));
  });

  it('a state dir owned by another user is refused', async () => {
    const dir = await plantedStateDir(0o700);
    chownSync(dir, NOBODY, NOBODY);
    assert.throws(() => ensureStateDir(dir), /state_dir .* is owned by uid 65534/);
  });

  it('a group-writable file is refused', async () => {
    const dir = await plantedStateDir(0o700);
    chmodSync(join(dir, KEY_FILE_NAME), 0o660);
    await assert.rejects(ensureSelfSigned(dir, ['localhost'], log), /key\.pem is writable by group or others \(mode 0660\)/);
  });

  it('a private state dir of our own is used as it is; an absent one is created 0700', async () => {
    const dir = await plantedStateDir(0o700);
    assert.equal((await ensureSelfSigned(dir, ['localhost'], log)).generated, false);
    assert.equal(loadHmacKey(undefined, dir).generated, false);
    const fresh = join(root, `fresh-${++counter}`, 'state');
    const previous = process.umask(0o022);
    try {
      assert.equal(loadHmacKey(undefined, fresh).generated, true);
    } finally {
      process.umask(previous);
    }
    assert.equal(statSync(fresh).mode & 0o777, 0o700);
  });
});
