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
