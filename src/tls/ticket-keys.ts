/**
 * Session ticket keys: the secret every context uses to encrypt TLS session tickets, shared
 * through tls.ticket_keys_file by the instances behind one address so a ticket resumes on any.
 */
import { randomBytes } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import type { Logger } from '../observability/log.js';
import { TlsMaterialError } from './material-error.js';

/** Session ticket keys are 48 bytes: a 16-byte name, a 16-byte HMAC secret and a 16-byte AES key. */
export const TICKET_KEYS_LENGTH = 48;

/**
 * The ticket keys: tls.ticket_keys_file (raw 48 bytes, or their base64), created with mode 0600
 * when absent so the first instance can hand it to the others; without the key, fresh random keys
 * (resumption works within this process until the next reload).
 */
export async function readTicketKeys(file: string | undefined, log: Logger): Promise<Buffer> {
  if (file === undefined) return randomBytes(TICKET_KEYS_LENGTH);
  let data: Buffer;
  try {
    data = await readFile(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw new TlsMaterialError(`cannot read tls.ticket_keys_file ${file} (${code ?? 'error'})`, { cause: error });
    const keys = randomBytes(TICKET_KEYS_LENGTH);
    try {
      await writeFile(file, `${keys.toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
    } catch (writeError) {
      throw new TlsMaterialError(`cannot create tls.ticket_keys_file ${file} (${(writeError as NodeJS.ErrnoException).code ?? 'error'})`, { cause: writeError });
    }
    log.info({ ticketKeysFile: file }, 'generated session ticket keys; copy this file to every instance that shares the address');
    return keys;
  }
  if (data.length === TICKET_KEYS_LENGTH) return data;
  const text = data.toString('latin1').trim();
  const decoded = /^[A-Za-z0-9+/]+={0,2}$/.test(text) ? Buffer.from(text, 'base64') : Buffer.alloc(0);
  if (decoded.length !== TICKET_KEYS_LENGTH) {
    throw new TlsMaterialError(`tls.ticket_keys_file ${file} must hold exactly 48 bytes, raw or base64 (e.g. openssl rand -base64 48)`);
  }
  if (((await stat(file)).mode & 0o077) !== 0) {
    log.warn({ ticketKeysFile: file }, 'TLS ticket key file is readable by group or others; chmod 600 it');
  }
  return decoded;
}
