import { createHmac } from 'node:crypto';

/**
 * AUTH CRAM-MD5 client response (RFC 2195 §2): the username, a space, and the lower-case hex
 * HMAC-MD5 of the server's challenge keyed with the password, all base64-encoded on the wire.
 * `challenge` is the decoded challenge (the msg-id the server sent in base64).
 */
export function cramMd5Response(user: string, password: Buffer, challenge: Buffer): string {
  const digest = createHmac('md5', password).update(challenge).digest('hex');
  return Buffer.from(`${user} ${digest}`, 'latin1').toString('base64');
}
