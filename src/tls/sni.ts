/**
 * SNI lookup: which certificate answers the name a client sent, by exact name or by a wildcard
 * for one left-most label. The listeners and --check-config pick by the same rule.
 */

/** A name a client sent, as compared: lower case, without a trailing dot. */
export const canonicalServerName = (name: string): string => name.toLowerCase().replace(/\.$/, '');

/**
 * SNI lookup: an exact name first, then `*.parent` for exactly one left-most label (RFC 6125
 * §6.4.3: `*.example.org` covers `a.example.org`, not `example.org` or `a.b.example.org`).
 */
export function sniLookup<T>(byName: ReadonlyMap<string, T>, servername: string): T | undefined {
  const name = canonicalServerName(servername);
  const exact = byName.get(name);
  if (exact !== undefined) return exact;
  const dot = name.indexOf('.');
  if (dot <= 0) return undefined;
  return byName.get(`*${name.slice(dot)}`);
}
