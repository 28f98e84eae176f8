/**
 * Validates the merged settings against the schema and explains the first problem as one line:
 * where the bad value came from (file:line, --flag or ENV_VAR), the value, and what to write
 * instead. Unknown keys get "did you mean" and renamed keys their successor.
 */
import type { z } from 'zod';
import type { ConfigFile } from './config-file.js';
import { fail } from './config-error.js';
import { closest, hint } from './did-you-mean.js';
import { getIn } from './object-paths.js';
import { RENAMED_KEYS, configSchema, type ParsedConfig } from './schema.js';
import { CONFIG_KEYS, knownKeysAt } from './schema-keys.js';

/** Where a key's value came from, so an error can point at the thing the user typed. */
export type Source = { readonly kind: 'flag' | 'env'; readonly label: string } | { readonly kind: 'file' };

/** Zod's wording for the generic cases, rephrased as the second half of "config: KEY VALUE ...". */
const issueWording: z.core.$ZodErrorMap = (issue) => {
  switch (issue.code) {
    case 'invalid_type': {
      if (issue.input === undefined) return 'is required';
      const expected: Record<string, string> = {
        string: 'must be text',
        boolean: 'must be true or false',
        number: 'must be a whole number',
        array: 'must be a list',
        object: 'must be a mapping of keys',
      };
      return expected[issue.expected] ?? `must be of type ${issue.expected}`;
    }
    case 'invalid_value':
      return `must be one of: ${issue.values.map(String).join(', ')}`;
    case 'too_small':
      return issue.origin === 'string' ? 'must not be empty' : `must be at least ${String(issue.minimum)}`;
    case 'too_big':
      return issue.origin === 'string'
        ? `is longer than ${String(issue.maximum)} characters`
        : `must be at most ${String(issue.maximum)}`;
    default:
      return undefined;
  }
};

function showValue(value: unknown): string {
  if (typeof value === 'string') return ` ${JSON.stringify(value)}`;
  if (typeof value === 'number' || typeof value === 'boolean') return ` ${String(value)}`;
  return '';
}

function explainUnknownKey(issue: z.core.$ZodIssueUnrecognizedKeys, file: ConfigFile | undefined): never {
  const key = issue.keys[0] ?? '';
  const dotted = [...issue.path, key].join('.');
  const line = file?.lineOf(issue.path, key);
  const where = file === undefined ? '' : `${file.path}${line === undefined ? '' : `:${line}`}: `;
  const renamed = RENAMED_KEYS[dotted];
  if (renamed !== undefined) return fail(`${where}"${dotted}" was replaced by "${renamed}"`);
  // A nested key written at the top level ("idle: 10m") is a common slip; point at its real home.
  const misplaced = CONFIG_KEYS.find((known) => known.path.length > 1 && known.path.at(-1) === key);
  const suggestion =
    closest(key, knownKeysAt(issue.path)) ?? (issue.path.length === 0 ? misplaced?.name : undefined);
  const known = [...issue.path, suggestion].filter((part) => part !== undefined).join('.');
  return fail(`${where}unknown key "${dotted}"; ${hint(suggestion && `"${known}"`, 'remove it (popwarden --help lists the known keys)')}`);
}

function explainIssue(
  issue: z.core.$ZodIssue,
  raw: Record<string, unknown>,
  sources: ReadonlyMap<string, Source>,
  file: ConfigFile | undefined,
): never {
  if (issue.code === 'unrecognized_keys') return explainUnknownKey(issue, file);
  if (issue.code === 'invalid_union') {
    // A value of one of the union's types is explained by that type's own problem (a listener
    // "HOST:PORT" with a bad port, or its object form with a bad key), not as "Invalid input".
    const typed = issue.errors.find((branch) => !branch.every((inner) => inner.code === 'invalid_type' && inner.path.length === 0));
    const inner = typed?.[0];
    if (inner !== undefined) return explainIssue({ ...inner, path: [...issue.path, ...inner.path] } as z.core.$ZodIssue, raw, sources, file);
    return explainIssue({ code: 'custom', path: issue.path, input: issue.input, message: 'must be HOST:PORT, or a mapping with address: HOST:PORT' }, raw, sources, file);
  }
  const name = issue.path.filter((part) => typeof part === 'string').join('.');
  const display = issue.path.map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? String(part) : `.${String(part)}`)).join('');
  const key = CONFIG_KEYS.find((known) => known.name === name);
  const value = getIn(raw, issue.path);
  const source = sources.get(name);
  let where = display;
  // A rule about several keys ("both empty") reads better with key names than with one key's source.
  const aboutSeveralKeys = issue.code === 'custom' && issue.params?.['severalKeys'] === true;
  if (aboutSeveralKeys) where = display;
  else if (source?.kind === 'flag' || source?.kind === 'env') where = source.label;
  else if (source?.kind === 'file' && file !== undefined) {
    const line = file.lineOf(issue.path);
    where = `${file.path}${line === undefined ? '' : `:${line}`}: ${display}`;
  }
  const remedy =
    value === undefined && issue.code === 'invalid_type' && key !== undefined
      ? `; set it in the config file, with --${key.flag}, or with ${key.env}`
      : '';
  return fail(`${where}${showValue(value)} ${issue.message}${remedy}`);
}

/** Unknown keys first: a misspelt key often also shows up as a "required" error on the real one. */
const issueOrder = (issue: z.core.$ZodIssue) => (issue.code === 'unrecognized_keys' ? 0 : 1);

export function validate(raw: Record<string, unknown>, sources: ReadonlyMap<string, Source>, file: ConfigFile | undefined): ParsedConfig {
  const result = configSchema.safeParse(raw, { error: issueWording });
  if (result.success) return result.data;
  const [first] = [...result.error.issues].sort((a, b) => issueOrder(a) - issueOrder(b));
  return first === undefined ? fail('invalid configuration') : explainIssue(first, raw, sources, file);
}
