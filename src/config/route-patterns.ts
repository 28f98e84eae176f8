/**
 * The rule for a regular expression that routes users: it runs on every login against a name the
 * client chose, so one that can backtrack exponentially ((a+)+$ against "aaaa…!") would let a
 * client stall the event loop. JavaScript has no linear-time engine, so the patterns that cause
 * it are refused when the config is loaded: a quantified group that itself contains a quantifier
 * or an alternative ((a|aa)+), and back-references. The name it runs on is bounded as well (255 octets, RFC 4616), which keeps
 * even polynomial backtracking small.
 */

/** Characters of a route's regular expression. */
export const MAX_ROUTE_PATTERN_LENGTH = 200;

const QUANTIFIER_START = new Set(['*', '+', '?', '{']);

/** True when `pattern` compiles and has neither a back-reference nor a nested quantifier. */
export function isBoundedPattern(pattern: string): boolean {
  try {
    new RegExp(pattern);
  } catch {
    return false;
  }
  if (/\\[1-9]|\\k</.test(pattern)) return false;
  // One entry per open group: whether something inside it is repeated or has alternatives.
  const groups: boolean[] = [];
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\') {
      i++;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      continue;
    }
    if (c === '[') inClass = true;
    else if (c === '(') groups.push(false);
    else if (c === ')') {
      const repeatedInside = groups.pop() ?? false;
      const next = pattern[i + 1];
      const quantified = next !== undefined && QUANTIFIER_START.has(next);
      if (quantified && repeatedInside) return false;
      if (groups.length > 0 && (repeatedInside || quantified)) groups[groups.length - 1] = true;
    } else if ((c === '*' || c === '+' || c === '{' || c === '|') && groups.length > 0) groups[groups.length - 1] = true;
  }
  return true;
}
