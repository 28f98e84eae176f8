/**
 * The sample maildrop as a classic mbox (/var/mail/USER), the format popa3d, GNU mailutils and
 * solid-pop3d read: each message after a `From ` separator line, LF line ends, a blank line
 * after it. The messages have no body line starting with `From `, so no `>From ` quoting
 * happens and every server gives back exactly the sample bytes (before any headers it adds).
 */
import { toLf, type SampleAccount } from './maildrop.js';

/** `account`'s messages as one mbox file. */
export function toMbox(account: SampleAccount): Buffer {
  const parts: Buffer[] = [];
  for (const m of account.messages) {
    const lf = toLf(m.bytes);
    // mbox quoting is lossy (a reader cannot tell a quoted line from one that had ">From "):
    // refuse such a message instead of comparing against bytes no server can give back.
    if (/(^|\n)>*From /.test(lf.toString('latin1'))) throw new Error(`message ${m.n} of ${m.user} has a "From " line`);
    const minute = String(m.n).padStart(2, '0');
    parts.push(Buffer.from(`From postmaster@popwarden.test Tue Jan  2 09:${minute}:00 2024\n`, 'latin1'), lf, Buffer.from('\n'));
  }
  return Buffer.concat(parts);
}
