/**
 * How an attempt becomes store keys. Every key is `PREFIX:KIND:ID`; the ID of a user+IP pair is in
 * a Redis Cluster hash tag (`{alice@192.0.2.7}`), so the pair's counter, its failed-password set
 * and its trusted mark live in one slot and can share a MULTI. Usernames are percent-encoded, so
 * no typed character can forge a separator; IPv6 clients are counted by their /64.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { normaliseAddress } from '../../net/addresses.js';
import type { UsernameCanonical } from '../../config/types.js';

/** The kinds of keys popwarden keeps, one per limiter plus the pair's two companions. */
export const KEY_KINDS = {
  userIp: 'uip',
  ip: 'ip',
  user: 'user',
  /** A user+IP that logged in successfully recently: exempt from the per-user block. */
  trusted: 'trusted',
  /** Truncated HMACs of the wrong passwords already counted for a user+IP. */
  seen: 'seen',
} as const;

export interface KeyOptions {
  readonly usernameCanonical: UsernameCanonical;
  readonly ipv6PrefixLength: number;
}

/** Compiled patterns, by source: a handful per process (one per configuration loaded). */
const compiled = new Map<string, RegExp>();

function compile(pattern: string): RegExp {
  let regex = compiled.get(pattern);
  if (regex === undefined) {
    regex = new RegExp(pattern);
    compiled.set(pattern, regex);
  }
  return regex;
}

/**
 * The account a typed username names, as the backend sees it (`rate_limit.username_canonical`):
 * trimmed, lower-cased unless the backend is case-sensitive, then cut at the first realm
 * separator (solid-pop3d logs "alice@x" and "alice%x" in as alice), or the capture of the
 * operator's pattern (a name it does not match is keyed whole). Every limit is keyed on this, so
 * "Alice", "alice@v1" and "alice%v2" share alice's counters: guesses cannot be spread over
 * spellings of one account. A rule coarser than the backend's only merges counters (never splits
 * them), which is why the default strips more than most servers do. A name that carries a
 * separator is not refused: it is already counted as its account, and many clients send the
 * whole address as the username (the README says more).
 */
export function canonicalUser(user: string, rule: UsernameCanonical): string {
  let name = user.trim();
  if (rule.lowerCase) name = name.toLowerCase();
  if (rule.pattern !== undefined) return compile(rule.pattern).exec(name)?.[1] ?? name;
  for (let i = 0; i < name.length; i++) {
    if (rule.realmSeparators.includes(name[i] ?? '')) return name.slice(0, i);
  }
  return name;
}

/** The username as a key part: percent-encoded, so ':', '@', '{', '}' and spaces cannot confuse keys. */
export function encodeUser(user: string): string {
  return encodeURIComponent(user);
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
 */
export function ipKey(address: string, prefixLength: number): string {
  const plain = normaliseAddress(address);
  if (isIPv4(plain)) return plain;
  const groups = ipv6Groups(plain);
  if (groups === undefined) return plain;
  if (groups[0] === 0 && groups[1] === 0 && groups[2] === 0 && groups[3] === 0 && groups[4] === 0 && groups[5] === 0xffff) {
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

/** The ids one attempt is counted under. */
export interface AttemptKeys {
  /** The canonical username (what the HMAC and the CLI see). */
  readonly user: string;
  /** ipKey() of the client. */
  readonly ip: string;
  /** `{user@ip}`: the user+IP pair id, a Cluster hash tag. */
  readonly pair: string;
  /** The percent-encoded user. */
  readonly userId: string;
}

export function attemptKeys(user: string, address: string, options: KeyOptions): AttemptKeys {
  const canonical = canonicalUser(user, options.usernameCanonical);
  const ip = ipKey(address, options.ipv6PrefixLength);
  const userId = encodeUser(canonical);
  return { user: canonical, ip, userId, pair: pairId(userId, ip) };
}

export function pairId(userId: string, ip: string): string {
  return `{${userId}@${ip}}`;
}

/** The full store key: `PREFIX:KIND:ID`. */
export function storeKey(prefix: string, kind: (typeof KEY_KINDS)[keyof typeof KEY_KINDS], id: string): string {
  return `${prefix}:${kind}:${id}`;
}
