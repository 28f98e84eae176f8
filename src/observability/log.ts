import { pino, type Logger, type DestinationStream } from 'pino';
import type { LogLevel } from '../config/types.js';
import { isControlByte } from '../pop3/control-bytes.js';

export type { Logger };

/**
 * Keys that must never reach a log line even if a caller passes them by mistake. Secrets are
 * also never put into log objects in the first place; this is the second belt.
 */
const REDACTED_PATHS = [
  'password',
  'pass',
  'secret',
  'payload',
  '*.password',
  '*.pass',
  '*.secret',
  '*.payload',
];

/** The process logger: JSON lines on stdout with level names, so operators can grep "level":"warn". */
export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      redact: { paths: REDACTED_PATHS, censor: '********' },
      formatters: { level: (label) => ({ level: label }) },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}

/**
 * Makes client-supplied text safe to log: control characters and non-ASCII bytes become \xNN, so
 * a username like "a\r\nFAKE LOG" or "\x1b[2J" cannot forge lines or drive a terminal.
 */
export function escapeForLog(text: string | Buffer, max = 256): string {
  const s = typeof text === 'string' ? text : text.toString('latin1');
  let out = '';
  let i = 0;
  for (; i < s.length && out.length < max; i++) {
    const code = s.charCodeAt(i);
    if (code === 0x5c) out += '\\\\';
    else if (!isControlByte(code) && code < 0x80) out += s[i];
    else out += `\\x${code.toString(16).padStart(2, '0')}`;
  }
  return i < s.length ? `${out}...` : out;
}
