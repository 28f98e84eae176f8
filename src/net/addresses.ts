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

/** Expands an IPv6 address to its 8 groups (as numbers); undefined if it is not one. */
function ipv6Groups(address: string): number[] | undefined {
  if (!isIPv6(address)) return undefined;
  let text = address.split('%')[0] ?? '';
  // A trailing dotted quad (::ffff:1.2.3.4, 64:ff9b::1.2.3.4) is two groups.
  const quad = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (quad !== null) {
    const [a, b, c, d] = quad.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, quad.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const parse = (part: string) => (part === '' ? [] : part.split(':').map((group) => parseInt(group, 16)));
  const left = parse(head);
  const right = tail === undefined ? [] : parse(tail);
  const missing = 8 - left.length - right.length;
  return [...left, ...Array<number>(Math.max(missing, 0)).fill(0), ...right];
}

/**
 * The address a client is counted under: IPv4 as is (IPv4-mapped IPv6 becomes IPv4), IPv6 as its
 * network of `prefixLength` bits in compressed form with the length ("2001:db8:1:2::/64").
 * One rule for every per-address count: the connection bounds here in net/ and the failed-login
 * limiters' keys (auth/rate-limit/keys.ts), so a client has the same identity in both.
 *
 * An address in NAT64's well-known prefix 64:ff9b::/96 (RFC 6052) is the IPv4 client a
 * translator (SIIT-DC, RFC 7755) forwards to an IPv6-only server, and is counted as that IPv4
 * address: by its /64, every IPv4 client of the translator would share one count, and one of them
 * could block them all. No other network can send from that prefix (it is not routed globally).
 */
export function ipKey(address: string, prefixLength: number): string {
  const plain = normaliseAddress(address);
  if (isIPv4(plain)) return plain;
  const groups = ipv6Groups(plain);
  if (groups === undefined) return plain;
  const mapped = groups[0] === 0 && groups[1] === 0 && groups[5] === 0xffff;
  const nat64 = groups[0] === 0x64 && groups[1] === 0xff9b && groups[5] === 0;
  if ((mapped || nat64) && groups[2] === 0 && groups[3] === 0 && groups[4] === 0) {
    const [hi = 0, lo = 0] = groups.slice(6);
    return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  const masked = groups.map((group, index) => {
    const bitsBefore = index * 16;
    if (bitsBefore >= prefixLength) return 0;
    if (bitsBefore + 16 <= prefixLength) return group;
    const keep = prefixLength - bitsBefore;
    return group & (0xffff << (16 - keep)) & 0xffff;
  });
  return `${compressIpv6(masked)}/${prefixLength}`;
}

/** RFC 5952 text: lower-case hex, the longest run of two or more zero groups as "::". */
function compressIpv6(groups: readonly number[]): string {
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < groups.length; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < groups.length && groups[j] === 0) j++;
    if (j - i > bestLength) [bestStart, bestLength] = [i, j - i];
    i = j;
  }
  const hex = groups.map((group) => group.toString(16));
  if (bestStart === -1) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}
