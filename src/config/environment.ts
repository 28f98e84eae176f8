/**
 * The POPWARDEN_* environment as a config source: one variable per schema key
 * (POPWARDEN_TIMEOUTS__IDLE). Unknown names are warnings, not errors; see readEnvironment.
 */
import { fail } from './config-error.js';
import { closest, hint } from './did-you-mean.js';
import { CONFIG_KEYS, ENV_PREFIX, type ConfigKey } from './schema-keys.js';
import { valueFromText } from './text-values.js';

/**
 * What Kubernetes injects for a Service named popwarden (enableServiceLinks, on by default):
 * POPWARDEN_SERVICE_HOST, POPWARDEN_SERVICE_PORT[_NAME], POPWARDEN_PORT[_995_TCP[_PROTO|_PORT|_ADDR]].
 */
const KUBERNETES_SERVICE_VARIABLE = new RegExp(`^${ENV_PREFIX}(SERVICE_HOST|SERVICE_PORT(_\\w+)?|PORT(_\\d+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?)$`);

export interface Environment {
  readonly values: Map<ConfigKey, unknown>;
  readonly warnings: string[];
}

/**
 * The POPWARDEN_* variables that name config keys. Unknown ones are ignored with a warning, not
 * refused as unknown flags and keys are: the environment is shared with the platform (Kubernetes
 * service links) and with wrapper scripts, which use the prefix for their own settings.
 */
export function readEnvironment(env: NodeJS.ProcessEnv): Environment {
  const byName = new Map(CONFIG_KEYS.map((key) => [key.env, key]));
  const values = new Map<ConfigKey, unknown>();
  const warnings: string[] = [];
  const kubernetes: string[] = [];
  for (const [name, text] of Object.entries(env).sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (!name.startsWith(ENV_PREFIX) || text === undefined) continue;
    const key = byName.get(name);
    if (key !== undefined) {
      values.set(key, valueFromText(key, name, text));
    } else if (name === `${ENV_PREFIX}CONFIG`) {
      // Ignoring it would serve without the file its author meant; that is worth a refusal.
      fail(`${name} is not supported; give the config file with --config FILE`);
    } else if (KUBERNETES_SERVICE_VARIABLE.test(name)) {
      kubernetes.push(name);
    } else {
      // Compared without the shared prefix, which would otherwise make every name look "close".
      const suggestion = closest(name.slice(ENV_PREFIX.length), [...byName.keys()].map((known) => known.slice(ENV_PREFIX.length)));
      warnings.push(`ignoring unknown environment variable ${name}; ${hint(suggestion && ENV_PREFIX + suggestion, 'unset it if it was meant for popwarden (popwarden --help lists the known ones)')}`);
    }
  }
  if (kubernetes.length > 0) {
    warnings.unshift(
      `ignoring ${kubernetes.join(', ')}: Kubernetes service variables, not settings (enableServiceLinks: false in the pod spec drops them)`,
    );
  }
  return { values, warnings };
}
