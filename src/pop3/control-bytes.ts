/**
 * The control-byte rule, defined once: NUL, the other C0 controls (TAB, CR and LF included) and
 * DEL. None of them has a place in a POP3 command line, a username, a status line passed to a
 * client or a log line, where a CR or LF would forge a line and an ESC would drive a terminal.
 */

/** True for 0x00-0x1f and 0x7f (a byte, or a Latin-1 character code). */
export function isControlByte(code: number): boolean {
  return code < 0x20 || code === 0x7f;
}

export function hasControlBytes(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) {
    if (isControlByte(bytes[i]!)) return true;
  }
  return false;
}

/** The bytes with every control byte left out: a copy, or the input itself when it has none. */
export function withoutControlBytes(bytes: Buffer): Buffer {
  if (!hasControlBytes(bytes)) return bytes;
  const out = Buffer.allocUnsafe(bytes.length);
  let length = 0;
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]!;
    if (!isControlByte(byte)) out[length++] = byte;
  }
  return out.subarray(0, length);
}
