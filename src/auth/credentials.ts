import { MAX_CREDENTIAL_FIELD_OCTETS } from '../config/limits.js';
import { hasControlBytes } from '../pop3/control-bytes.js';

/**
 * What a client proved it knows, on its way to the backend. The password lives in a Buffer so
 * it can be wiped after the backend login; a JS string would linger in the heap until GC.
 */
export class Credentials {
  /** The username exactly as the client sent it (latin1: one character per byte). */
  readonly user: string;
  readonly #password: Buffer;
  #wiped = false;

  /** Takes a copy of `password`; the caller should wipe its own buffer. */
  constructor(user: string, password: Buffer) {
    this.user = user;
    this.#password = Buffer.from(password);
  }

  /** The password bytes. Never log them, never turn them into a string. */
  get password(): Buffer {
    if (this.#wiped) throw new Error('credentials were already wiped');
    return this.#password;
  }

  /** Zeroes the password; further use throws. */
  wipe(): void {
    this.#password.fill(0);
    this.#wiped = true;
  }

  /** Keeps secrets out of logs and util.inspect, whatever a caller passes to them. */
  toJSON(): { user: string } {
    return { user: this.user };
  }
}

/**
 * A username may travel to the backend inside a command line (USER, APOP, CRAM-MD5), so it must
 * never carry a line break or other control byte: "alice\r\nDELE 1" through AUTH PLAIN would be
 * command injection on the backend link. Length is bounded by RFC 4616 §2.
 */
export function isAcceptableUsername(user: Buffer): boolean {
  return user.length > 0 && user.length <= MAX_CREDENTIAL_FIELD_OCTETS && !hasControlBytes(user);
}

/**
 * A password may travel inside a PASS line, so NUL, CR and LF are refused: a SASL password
 * "x\r\nUSER victim\r\nPASS guess" would otherwise become extra backend commands that no limiter
 * sees. Other bytes, 8-bit included, reach the backend unchanged (RFC 4616 §2: up to 255 octets).
 */
export function isAcceptablePassword(password: Buffer): boolean {
  return (
    password.length > 0 &&
    password.length <= MAX_CREDENTIAL_FIELD_OCTETS &&
    !password.includes(0x00) &&
    !password.includes(0x0a) &&
    !password.includes(0x0d)
  );
}
