/**
 * popwarden's version, for `popwarden --version` and the build_info metric: read from
 * package.json, the one place it is written.
 */
import { readFileSync } from 'node:fs';

/** The version in package.json, or "unknown" when it cannot be read (src/ and dist/ both sit one level below it). */
export function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
