/**
 * How an attempt becomes store keys. Every key is `PREFIX:KIND:ID`; the ID of a user+IP pair is in
 * a Redis Cluster hash tag (`{alice@192.0.2.7}`), so the pair's counter, its failed-password set
 * and its trusted mark live in one slot and can share a MULTI. Usernames are percent-encoded, so
 * no typed character can forge a separator; IPv6 clients are counted by their /64.
 */
import { ipKey } from '../../net/addresses.js';
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
 * whole address as the username (docs/SECURITY.md, "Spellings of one account", says more).
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
