/**
 * The command line as a config source: control flags (--config, --check-config, --help,
 * --version) and one flag per schema key, plus `--no-` for booleans. parseArgs' errors are
 * rephrased as one line that names the flag and the fix.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { fail } from './config-error.js';
import { closest, hint } from './did-you-mean.js';
import { CONFIG_KEYS, type ConfigKey } from './schema-keys.js';
import { valueFromText, splitList } from './text-values.js';

const CONTROL_FLAGS = {
  config: { type: 'string', short: 'c' },
  'check-config': { type: 'boolean', short: 't' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
} as const satisfies ParseArgsConfig['options'];

/** Short spellings of long flags: `--redis URL` is `--redis-url URL`. */
const FLAG_ALIASES: Readonly<Record<string, string>> = { redis: 'redis-url' };

/** Node 20's parseArgs has no `--no-x`, so every boolean key gets an explicit negative flag. */
export const NEGATIVE_PREFIX = 'no-';

function flagOptions(): NonNullable<ParseArgsConfig['options']> {
  const options: NonNullable<ParseArgsConfig['options']> = { ...CONTROL_FLAGS };
  for (const key of CONFIG_KEYS) {
    if (key.kind === 'boolean') {
      options[key.flag] = { type: 'boolean' };
      options[NEGATIVE_PREFIX + key.flag] = { type: 'boolean' };
    } else {
      options[key.flag] = { type: 'string', multiple: key.kind === 'list' };
    }
  }
  for (const [alias, flag] of Object.entries(FLAG_ALIASES)) {
    const target = options[flag];
    if (target !== undefined) options[alias] = target;
  }
  return options;
}

export interface CommandLine {
  readonly configFile: string | undefined;
  readonly check: boolean;
  readonly help: boolean;
  readonly version: boolean;
  readonly values: ReadonlyMap<ConfigKey, unknown>;
}

function explainArgvError(error: unknown, options: Record<string, unknown>): never {
  const code = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message : String(error);
  const quoted = /'([^']*)'/.exec(message)?.[1] ?? '';
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const flag = quoted.replace(/^-+/, '').split('=')[0] ?? '';
    const suggestion = closest(flag, Object.keys(options));
    return fail(`unknown flag ${quoted}; ${hint(suggestion && `--${suggestion}`, 'see popwarden --help')}`);
  }
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
    return fail(`unexpected argument "${quoted}"; popwarden takes only --flags (see popwarden --help)`);
  }
  const flag = quoted.split(' ')[0] ?? quoted;
  if (message.includes('argument missing')) return fail(`${flag} needs a value (see popwarden --help)`);
  if (message.includes('does not take an argument')) {
    const negative = `--${NEGATIVE_PREFIX}${flag.replace(/^--/, '')}`;
    const alternatives = negative.slice(2) in options ? `; use ${flag} or ${negative}` : '';
    return fail(`${flag} is an on/off flag and takes no value${alternatives}`);
  }
  return fail(message.split('. ')[0] ?? message);
}

export function readCommandLine(argv: readonly string[]): CommandLine {
  const options = flagOptions();
  let parsed: ReturnType<typeof parseArgs>['values'];
  try {
    parsed = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    return explainArgvError(error, options);
  }
  for (const [alias, flag] of Object.entries(FLAG_ALIASES)) {
    if (parsed[alias] === undefined) continue;
    if (parsed[flag] !== undefined) fail(`--${alias} and --${flag} are the same setting; give one`);
    parsed[flag] = parsed[alias];
  }
  const values = new Map<ConfigKey, unknown>();
  for (const key of CONFIG_KEYS) {
    const given = parsed[key.flag];
    if (key.kind === 'boolean') {
      const negated = parsed[NEGATIVE_PREFIX + key.flag];
      if (given === true && negated === true) fail(`--${key.flag} and --${NEGATIVE_PREFIX}${key.flag} contradict each other; keep one`);
      if (given === true) values.set(key, true);
      if (negated === true) values.set(key, false);
    } else if (Array.isArray(given)) {
      values.set(key, splitList(given as string[]));
    } else if (typeof given === 'string') {
      values.set(key, key.kind === 'integer' ? valueFromText(key, `--${key.flag}`, given) : given);
    }
  }
  const configFile = parsed['config'];
  return {
    configFile: typeof configFile === 'string' ? configFile : undefined,
    check: parsed['check-config'] === true,
    help: parsed['help'] === true,
    version: parsed['version'] === true,
    values,
  };
}
