/**
 * Builds the runtime Config from the command line, POPWARDEN_* environment variables and an
 * optional YAML file (flag > env > file > default), validates it against the schema, and freezes
 * it. Every failure is a ConfigError whose message is one line naming where the bad value came
 * from (file:line, --flag or ENV_VAR) and what to do about it.
 *
 * This file only runs the steps; each job has its own file: the sources (argv.ts,
 * environment.ts, config-file.ts), the explanations (explain.ts), the runtime mapping
 * (runtime.ts), the file checks (file-checks.ts), the printer (effective-config.ts), --help
 * (usage.ts).
 */
import { readCommandLine } from './argv.js';
import { readConfigFile } from './config-file.js';
import { readEnvironment } from './environment.js';
import { validate, type Source } from './explain.js';
import { checkReferencedFiles } from './file-checks.js';
import { getIn, setIn } from './object-paths.js';
import { settle, toRuntimeConfig, type EffectiveSettings } from './runtime.js';
import { CONFIG_KEYS } from './schema-keys.js';
import { refuseMixedBackendForms } from './routing-schema.js';
import type { Config } from './types.js';

// Re-exported for the importers outside config/ (cli.ts, backend/cli.ts, redis-client.ts), so
// splitting this file touched no other folder; code inside config/ imports from the owning file.
export { ConfigError } from './config-error.js';
export { defaultStateDir } from './runtime.js';
export { redactRedisUrl, redactedConfig } from './effective-config.js';
export { usage } from './usage.js';

export type LoadResult =
  | { readonly action: 'help' }
  | { readonly action: 'version' }
  | {
      /** `check`: --check-config was given; print the config and exit instead of serving. */
      readonly action: 'run' | 'check';
      readonly config: Config;
      /** The same values in config-file shape (durations in ms, addresses parsed): what --check-config prints. */
      readonly settings: EffectiveSettings;
      readonly configFile: string | undefined;
      /** One line each, for the log (or stderr with --check-config): things ignored, not refused. */
      readonly warnings: readonly string[];
    };

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

/**
 * flags > env > file > defaults → a deeply frozen Config. Referenced files (cert, key, backend_ca)
 * are checked to exist and be readable, in both run and --check-config mode. Throws ConfigError.
 */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv): LoadResult {
  const commandLine = readCommandLine(argv);
  if (commandLine.help) return { action: 'help' };
  if (commandLine.version) return { action: 'version' };

  const environment = readEnvironment(env);
  const fromEnv = environment.values;
  const file = commandLine.configFile === undefined ? undefined : readConfigFile(commandLine.configFile);
  const raw: Record<string, unknown> = structuredClone(file?.data ?? {});
  const sources = new Map<string, Source>();
  for (const key of CONFIG_KEYS) if (getIn(raw, key.path) !== undefined) sources.set(key.name, { kind: 'file' });
  for (const [layer, kind] of [
    [fromEnv, 'env'],
    [commandLine.values, 'flag'],
  ] as const) {
    for (const [key, value] of layer) {
      setIn(raw, key.path, value);
      sources.set(key.name, { kind, label: kind === 'env' ? key.env : `--${key.flag}` });
    }
  }

  refuseMixedBackendForms(sources);
  const settings = settle(validate(raw, sources, file), env);
  const config = deepFreeze(toRuntimeConfig(settings));
  checkReferencedFiles(config);
  return { action: commandLine.check ? 'check' : 'run', config, settings, configFile: file?.path, warnings: environment.warnings };
}
