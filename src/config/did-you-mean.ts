/**
 * "Did you mean": unknown keys, flags and environment variables are almost always typos of known
 * ones, so each refusal names the closest known spelling when there is one.
 */

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

export function closest(word: string, candidates: readonly string[]): string | undefined {
  const normalise = (text: string) => text.toLowerCase().replaceAll('-', '_');
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const candidate of candidates) {
    const distance = editDistance(normalise(word), normalise(candidate));
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return best;
}

export const hint = (suggestion: string | undefined, fallback: string) =>
  suggestion === undefined ? fallback : `did you mean ${suggestion}?`;
