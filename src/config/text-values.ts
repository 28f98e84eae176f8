/**
 * Text from flags and environment variables turned into the JS types the schema expects (the YAML
 * file arrives typed already): lists split on commas, on/off words, whole numbers.
 */
import type { ConfigKey } from './schema-keys.js';
import { fail } from './config-error.js';

const TRUE_WORDS = new Set(['true', '1', 'yes', 'on']);
const FALSE_WORDS = new Set(['false', '0', 'no', 'off']);

/** Repeated flags and comma-separated text both make one list; blank items are dropped. */
export function splitList(values: readonly string[]): string[] {
  return values.flatMap((value) => value.split(',')).map((item) => item.trim()).filter((item) => item !== '');
}

/** One flag's or variable's text (`name` is how the user spelled it, for the error) as the schema's input type. */
export function valueFromText(key: ConfigKey, name: string, text: string): unknown {
  switch (key.kind) {
    case 'list':
      return splitList([text]);
    case 'boolean': {
      const word = text.trim().toLowerCase();
      if (TRUE_WORDS.has(word)) return true;
      if (FALSE_WORDS.has(word)) return false;
      return fail(`${name} ${JSON.stringify(text)} must be true or false`);
    }
    case 'integer':
      // Left as text when not an integer, so the schema reports it like any other bad value.
      return /^-?\d+$/.test(text.trim()) ? Number(text) : text;
    case 'string':
      return text;
  }
}
