/**
 * The YAML file as a config source: read and parsed with line positions kept, so an error can
 * point at file:line. Refusals (missing file, syntax error, not a mapping) are one line each.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type * as Yaml from 'yaml';
import { fail } from './config-error.js';

/**
 * The yaml package, loaded on first use: about 8 MiB of RSS that a popwarden configured by flags
 * and environment alone never needs (issue 10.4). It ships CommonJS, so require() is synchronous.
 */
export const yamlPackage = (): typeof Yaml => createRequire(import.meta.url)('yaml') as typeof Yaml;

export interface ConfigFile {
  readonly path: string;
  readonly data: Record<string, unknown>;
  /** The 1-based line of a key (or of its value, for a path into a list), when the file has it. */
  lineOf(path: readonly PropertyKey[], key?: string): number | undefined;
}

export function readConfigFile(path: string): ConfigFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message;
    return fail(`cannot read config file ${path}: ${reason}`);
  }
  const { LineCounter, isMap, isNode, isScalar, parseDocument } = yamlPackage();
  const lineCounter = new LineCounter();
  const doc: Yaml.Document = parseDocument(text, { lineCounter, prettyErrors: false });
  const syntaxError = doc.errors[0];
  if (syntaxError !== undefined) {
    const at = lineCounter.linePos(syntaxError.pos[0]);
    const position = `${at.line}:${at.col}:`;
    // Unquoted "[::1]:995" is a YAML flow list followed by junk; the parser cannot say so.
    const lineText = text.split('\n')[at.line - 1] ?? '';
    const ipv6Hint = /\[[\da-fA-F:.]*:[\da-fA-F:.]*\]:\d/.test(lineText) ? '; quote IPv6 addresses, e.g. "[::1]:995"' : '';
    return fail(`${path}:${position} YAML syntax error: ${syntaxError.message}${ipv6Hint}`);
  }
  let data: unknown;
  try {
    // Aliases resolve only here: one with no anchor, or a "billion laughs" past the yaml
    // library's alias bound, throws a ReferenceError that must not escape as anything but ours.
    data = doc.toJS() ?? {};
  } catch (error) {
    return fail(`${path}: YAML error: ${(error as Error).message}`);
  }
  if (typeof data !== 'object' || Array.isArray(data)) {
    return fail(`${path}: the file must be a mapping of keys (key: value), not a ${Array.isArray(data) ? 'list' : 'scalar'}`);
  }
  const lineAt = (offset: number | undefined) => (offset === undefined ? undefined : lineCounter.linePos(offset).line);
  return {
    path,
    data: data as Record<string, unknown>,
    lineOf(keyPath, key) {
      if (key === undefined) {
        const node: unknown = doc.getIn(keyPath, true);
        return lineAt(isNode(node) ? node.range?.[0] : undefined);
      }
      const map: unknown = keyPath.length === 0 ? doc.contents : doc.getIn(keyPath, true);
      if (!isMap(map)) return undefined;
      const pair = map.items.find((item) => isScalar(item.key) && String(item.key.value) === key);
      return lineAt(isScalar(pair?.key) ? pair.key.range?.[0] : undefined);
    },
  };
}
