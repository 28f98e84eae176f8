/**
 * Strict base64 for SASL (RFC 4648 §4 alphabet, padding only at the end, length a multiple of
 * four, RFC 4954 §4's rules). Node's decoder silently skips junk, which would let "!!!" decode
 * to an empty buffer; this one refuses it.
 */
const STRICT_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Decodes strict base64, or returns undefined for anything malformed. */
export function decodeBase64Strict(text: string): Buffer | undefined {
  if (!STRICT_BASE64.test(text)) return undefined;
  return Buffer.from(text, 'base64');
}
