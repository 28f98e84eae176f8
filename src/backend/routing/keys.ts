/**
 * How a username is looked up in the routes, and how it is rewritten for its backend. Routes
 * compare the name trimmed, and lower-cased unless rate_limit.username_canonical.lower_case is
 * false (a backend whose accounts differ by case); unlike the limiter's canonical name the domain
 * stays, since `*@domain` routes need it.
 */

/** The name routes compare: trimmed, lower-cased when the backend's logins ignore case. */
export function routeKey(user: string, lowerCase: boolean): string {
  const trimmed = user.trim();
  return lowerCase ? trimmed.toLowerCase() : trimmed;
}

/** The part after the last `@`, or undefined for a name without one. */
export function domainOf(key: string): string | undefined {
  const at = key.lastIndexOf('@');
  return at === -1 || at === key.length - 1 ? undefined : key.slice(at + 1);
}

/**
 * The name the backend gets: `strip_domain` keeps what is before the last `@`; a template
 * replaces %u (the name, trimmed), %n (before the last `@`), %d (after it, or "") and %%.
 * The schema allows no other `%` sequence. Works on the name as typed (trimmed), not lower-cased:
 * the backend decides about case as it always did.
 */
export function rewriteUser(rule: string | undefined, user: string): string {
  if (rule === undefined) return user;
  const name = user.trim();
  const at = name.lastIndexOf('@');
  const local = at === -1 ? name : name.slice(0, at);
  if (rule === 'strip_domain') return local;
  const domain = at === -1 ? '' : name.slice(at + 1);
  return rule.replace(/%([und%])/g, (_, code: string) => (code === 'u' ? name : code === 'n' ? local : code === 'd' ? domain : '%'));
}
