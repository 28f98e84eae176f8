import { isIPv4, isIPv6 } from 'node:net';

/** Strips the IPv4-mapped IPv6 prefix (::ffff:127.0.0.1 → 127.0.0.1) so one address has one form. */
export function normaliseAddress(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return mapped?.[1] ?? address;
}

/** True for 127.0.0.0/8 and ::1 (and their IPv4-mapped forms). */
export function isLoopbackAddress(address: string): boolean {
  const plain = normaliseAddress(address);
  if (isIPv4(plain)) return plain.startsWith('127.');
  return isIPv6(plain) && /^(0{0,4}:){1,7}0{0,3}1$|^::1$/.test(plain);
}
