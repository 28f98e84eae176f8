import { MAX_CREDENTIAL_FIELD_OCTETS } from '../config/limits.js';
import { isAcceptablePassword, isAcceptableUsername } from './credentials.js';

/** A decoded SASL PLAIN message (RFC 4616 §2): [authzid] NUL authcid NUL passwd. */
export type PlainMessage =
  | { readonly kind: 'ok'; readonly user: string; readonly password: Buffer }
  | { readonly kind: 'malformed' }
  /** Asked to act as somebody else: popwarden has no notion of proxy authorization. */
  | { readonly kind: 'authzid-refused' };

/** Splits a decoded PLAIN message. The returned password is a view of `message`: wipe it after use. */
export function parsePlainMessage(message: Buffer): PlainMessage {
  const first = message.indexOf(0);
  const second = first === -1 ? -1 : message.indexOf(0, first + 1);
  if (first === -1 || second === -1 || message.indexOf(0, second + 1) !== -1) return { kind: 'malformed' };
  const authzid = message.subarray(0, first);
  const authcid = message.subarray(first + 1, second);
  const password = message.subarray(second + 1);
  const tooLong = [authzid, authcid, password].some((field) => field.length > MAX_CREDENTIAL_FIELD_OCTETS);
  if (!isAcceptableUsername(authcid) || !isAcceptablePassword(password) || tooLong) return { kind: 'malformed' };
  if (authzid.length > 0 && !authzid.equals(authcid)) return { kind: 'authzid-refused' };
  return { kind: 'ok', user: authcid.toString('latin1'), password };
}
