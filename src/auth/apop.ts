import { createHash } from 'node:crypto';
import { MAX_APOP_TIMESTAMP_OCTETS } from '../config/limits.js';

/**
 * APOP (RFC 1939 §7): the digest is MD5 over the greeting's timestamp followed by the password,
 * in lower-case hex.
 */
export function apopDigest(timestamp: string, password: Buffer): string {
  return createHash('md5').update(Buffer.from(timestamp, 'latin1')).update(password).digest('hex');
}

/**
 * A timestamp is `<...@...>` of printable ASCII with no nested brackets or spaces, within a
 * bounded length (CVE-2007-1558: a MitM that chooses hostile challenges recovers password
 * characters; non-conforming msg-ids must be refused). Anything else, or two candidates in one
 * greeting, is not a timestamp at all.
 */
const TIMESTAMP = /<[\x21-\x3b\x3d\x3f-\x7e]+@[\x21-\x3b\x3d\x3f-\x7e]+>/g;

/** Extracts the APOP timestamp from a greeting's text, or undefined if it has no valid one. */
export function findApopTimestamp(greetingText: string): string | undefined {
  const candidates = greetingText.match(TIMESTAMP);
  if (candidates === null || candidates.length !== 1) return undefined;
  const [timestamp] = candidates;
  if (timestamp === undefined || timestamp.length > MAX_APOP_TIMESTAMP_OCTETS) return undefined;
  // Only one '@' inside and no stray bracket elsewhere: anything else is ambiguous.
  if ((greetingText.match(/</g) ?? []).length !== 1 || (greetingText.match(/>/g) ?? []).length !== 1) return undefined;
  if ((timestamp.match(/@/g) ?? []).length !== 1) return undefined;
  return timestamp;
}
