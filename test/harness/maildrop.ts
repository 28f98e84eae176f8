/**
 * The deterministic sample maildrop every interop test uses: two accounts, four messages chosen
 * to break relays (dot-stuffing, a ~5 MB body, 8-bit UTF-8, a 2,000-character line). The bytes
 * are the same on every run, so tests can compare what a client fetched with `bytes` and `sha256`.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** One message of the sample maildrop, in the exact form a POP3 client sees after un-stuffing. */
export interface SampleMessage {
  readonly user: string;
  /** 1-based position in the user's maildrop (the POP3 message number). */
  readonly n: number;
  /** The message with CRLF line ends, i.e. RETR's payload without dot-stuffing and terminator. */
  readonly bytes: Buffer;
  /** Hex sha256 of `bytes`. */
  readonly sha256: string;
  readonly messageId: string;
  /** Maildir file name; with `pop3_uidl_format = %f` this is also Dovecot's UIDL. */
  readonly uidl: string;
}

/** A test account and its messages. */
export interface SampleAccount {
  readonly user: string;
  readonly pass: string;
  /** Numeric uid Dovecot's mail process runs as (no host account exists). */
  readonly uid: number;
  readonly messages: readonly SampleMessage[];
}

/** Group id used for the maildirs (no host group exists). */
export const MAIL_GID = 20000;

const HEADER = (user: string, n: number, subject: string, minute: number): string =>
  [
    'Return-Path: <postmaster@popwarden.test>',
    'From: Popwarden Sample <postmaster@popwarden.test>',
    `To: ${user} <${user}@popwarden.test>`,
    `Subject: ${subject}`,
    `Date: Tue, 02 Jan 2024 09:${String(minute).padStart(2, '0')}:00 +0000`,
    `Message-ID: <sample-${user}-${n}@popwarden.test>`,
    'MIME-Version: 1.0',
  ].join('\r\n') + '\r\n';

/** Message 1: body lines that a relay must dot-stuff and un-stuff (RFC 1939 §3). */
function dotsMessage(user: string): Buffer {
  const body = [
    '.this first body line starts with a dot',
    '.',
    '..',
    '.foo',
    '...',
    '. a dot and a space',
    'a line with a dot at the end.',
    '',
    '.',
    'end of message 1',
  ];
  return Buffer.from(
    HEADER(user, 1, '[popwarden-1] dot-stuffing hazards', 0) +
      'Content-Type: text/plain; charset=us-ascii\r\n\r\n' +
      body.map((l) => l + '\r\n').join(''),
    'ascii',
  );
}

/** Deterministic pseudo-random bytes (xorshift32), so the attachment is identical on every run. */
function pseudoRandomBytes(length: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = seed >>> 0 || 1;
  let i = 0;
  while (i + 4 <= length) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out.writeUInt32LE(x, i);
    i += 4;
  }
  while (i < length) out[i++] = 0x5a;
  return out;
}

// Each message spells out its own MIME text: they share the shape of header lines, not their
// content, and each is read against the case it covers.
/** Message 2: multipart with a ~5 MB base64 attachment (76-character lines). */
function bigMessage(user: string): Buffer {
  const payload = pseudoRandomBytes(3_750_000, 0x9e3779b9);
  const b64 = payload.toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 76) lines.push(b64.slice(i, i + 76));
  return Buffer.from(
    HEADER(user, 2, '[popwarden-2] ~5 MB attachment', 1) +
      'Content-Type: multipart/mixed; boundary="pw-boundary-2"\r\n' +
      '\r\n' +
      '--pw-boundary-2\r\n' +
      'Content-Type: text/plain; charset=us-ascii\r\n' +
      '\r\n' +
      `Attachment sha256: ${createHash('sha256').update(payload).digest('hex')}\r\n` +
      '\r\n' +
      '--pw-boundary-2\r\n' +
      'Content-Type: application/octet-stream; name="blob.bin"\r\n' +
      'Content-Transfer-Encoding: base64\r\n' +
      'Content-Disposition: attachment; filename="blob.bin"\r\n' +
      '\r\n' +
      lines.join('\r\n') +
      '\r\n' +
      '--pw-boundary-2--\r\n',
    'ascii',
  );
}

/** Message 3: 8-bit UTF-8 text and one 2,000-character line that starts with a dot. */
function utf8Message(user: string): Buffer {
  const long = '.' + 'abcdefghij'.repeat(200).slice(1);
  if (long.length !== 2000) throw new Error('long line must be 2000 characters');
  return Buffer.from(
    HEADER(user, 3, '=?UTF-8?Q?[popwarden-3]_8bit_Gr=C3=BC=C3=9Fe?=', 2) +
      'Content-Type: text/plain; charset=utf-8\r\n' +
      'Content-Transfer-Encoding: 8bit\r\n' +
      '\r\n' +
      'Grüße aus Zürich – naïve façade ✓ 日本語 🙂\r\n' +
      'Ελληνικά · русский · עברית · العربية\r\n' +
      'The next line has exactly 2000 characters (RFC 5322 allows 998):\r\n' +
      long +
      '\r\n' +
      'end of message 3 ✓\r\n',
    'utf8',
  );
}

/** Bob's only message. */
function bobMessage(user: string): Buffer {
  return Buffer.from(
    HEADER(user, 1, '[popwarden-bob-1] hello', 3) +
      'Content-Type: text/plain; charset=us-ascii\r\n\r\n' +
      'Hello bob, this maildrop has exactly one message.\r\n',
    'ascii',
  );
}

function build(user: string, pass: string, uid: number, makers: ((u: string) => Buffer)[]): SampleAccount {
  const messages = makers.map((make, i): SampleMessage => {
    const n = i + 1;
    const bytes = make(user);
    return {
      user,
      n,
      bytes,
      sha256: createHash('sha256').update(bytes).digest('hex'),
      messageId: `<sample-${user}-${n}@popwarden.test>`,
      uidl: `${1704186000 + n}.M${n}P7.popwarden`,
    };
  });
  return { user, pass, uid, messages };
}

let cached: { alice: SampleAccount; bob: SampleAccount } | undefined;

/** Returns the two sample accounts (built once per process; the bytes never change). */
export function sampleMaildrop(): { readonly alice: SampleAccount; readonly bob: SampleAccount } {
  cached ??= {
    alice: build('alice', 's3cret!pw', 20001, [dotsMessage, bigMessage, utf8Message]),
    bob: build('bob', 'bobpass', 20002, [bobMessage]),
  };
  return cached;
}

/** The Message-ID of a message, to tell which ones a server still holds whatever headers it adds. */
export function messageIdOf(bytes: Buffer): string {
  const header = bytes.subarray(0, bytes.indexOf('\r\n\r\n')).toString('latin1');
  return /^Message-ID: (.*)$/im.exec(header)?.[1]?.trim() ?? '(none)';
}

/** Converts CRLF line ends to LF, the form Maildir stores and LF-converting clients deliver. */
export function toLf(bytes: Buffer): Buffer {
  const out = Buffer.allocUnsafe(bytes.length);
  let o = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (b === 0x0d && bytes[i + 1] === 0x0a) continue;
    out[o++] = b;
  }
  return out.subarray(0, o);
}

/** Applies POP3 dot-stuffing (RFC 1939 §3) and appends the `.CRLF` terminator. */
export function dotStuff(bytes: Buffer): Buffer {
  const parts: Buffer[] = [];
  let start = 0;
  let lineStart = true;
  for (let i = 0; i < bytes.length; i++) {
    if (lineStart && bytes[i] === 0x2e) {
      parts.push(bytes.subarray(start, i), Buffer.from('.'));
      start = i;
    }
    lineStart = bytes[i] === 0x0a;
  }
  parts.push(bytes.subarray(start));
  if (bytes.length > 0 && !bytes.subarray(-2).equals(Buffer.from('\r\n'))) parts.push(Buffer.from('\r\n'));
  parts.push(Buffer.from('.\r\n'));
  return Buffer.concat(parts);
}

/**
 * Writes `account` as a Maildir (`new/` with fixed file names and mtimes, LF line ends) under
 * `dir`, owned by the account's uid and MAIL_GID when `chown` is true.
 */
export function writeMaildir(dir: string, account: SampleAccount, opts: { chown?: boolean } = {}): void {
  for (const sub of ['cur', 'new', 'tmp']) fs.mkdirSync(path.join(dir, sub), { recursive: true, mode: 0o700 });
  for (const m of account.messages) {
    const file = path.join(dir, 'new', m.uidl);
    fs.writeFileSync(file, toLf(m.bytes), { mode: 0o600 });
    const t = 1704186000 + m.n;
    fs.utimesSync(file, t, t);
  }
  if (opts.chown) {
    const own = (p: string): void => {
      fs.chownSync(p, account.uid, MAIL_GID);
      if (fs.statSync(p).isDirectory()) for (const e of fs.readdirSync(p)) own(path.join(p, e));
    };
    own(dir);
  }
}
