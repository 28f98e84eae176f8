/**
 * The fingerprint of a refused password, so a device retrying one stale password counts once,
 * not once per try. It is a keyed HMAC-SHA-256 truncated to 64 bits, over the user+IP pair and
 * the password: never the password, never a plain hash (a leaked store must not be a table of
 * password hashes to crack offline), and not comparable across users or addresses. The key is
 * random per deployment, read from `rate_limit.hmac_key_file` or generated into state_dir.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkStateFile, ensureStateDir } from '../../config/state-dir.js';

/** Bytes of key generated; a key file must hold at least this many. */
export const HMAC_KEY_BYTES = 32;
/** Name of the generated key file inside state_dir. */
export const GENERATED_KEY_FILE = 'ratelimit-hmac.key';
/** 64 bits: a chance collision (a new wrong password taken for a repeat) is 1 in 2^64. */
const TAG_HEX_CHARS = 16;

export interface HmacKey {
  readonly key: Buffer;
  readonly file: string;
  readonly generated: boolean;
}

/**
 * The configured key file, or state_dir's generated one (created on first start with mode 0600,
 * exclusively, so two instances starting at once cannot each write their own). The file holds
 * the key as hex or raw bytes; at least 32 bytes.
 */
export function loadHmacKey(keyFile: string | undefined, stateDir: string): HmacKey {
  const file = keyFile ?? join(stateDir, GENERATED_KEY_FILE);
  let generated = false;
  if (keyFile === undefined) {
    ensureStateDir(stateDir);
    checkStateFile(file);
    try {
      writeFileSync(file, `${randomBytes(HMAC_KEY_BYTES).toString('hex')}\n`, { flag: 'wx', mode: 0o600 });
      chmodSync(file, 0o600);
      generated = true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
  const raw = readFileSync(file);
  const text = raw.toString('latin1').trim();
  const key = /^[0-9a-fA-F]+$/.test(text) && text.length % 2 === 0 ? Buffer.from(text, 'hex') : raw;
  if (key.length < HMAC_KEY_BYTES) {
    throw new Error(`rate_limit.hmac_key_file ${file} holds ${key.length} bytes; it needs at least ${HMAC_KEY_BYTES} (e.g. openssl rand -hex 32 > ${file})`);
  }
  return { key, file, generated };
}

/** The truncated HMAC of one refused password for one user+IP pair. */
export function passwordTag(key: Buffer, pair: string, password: Buffer): string {
  return createHmac('sha256', key)
    .update(pair, 'latin1')
    .update(Buffer.from([0]))
    .update(password)
    .digest('hex')
    .slice(0, TAG_HEX_CHARS);
}
